package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/servercmd/embeddedredis"
)

// allInOne is a running all-in-one server binary.
type allInOne struct {
	cmd       *exec.Cmd
	base      string // http://127.0.0.1:port
	redisAddr string
	stderr    *e2etest.Buffer
	exited    chan error
	reaped    bool
}

// startAllInOne runs the built server with only PATH, HOME and DATA_DIR,
// and waits for its welcome text (page URL and embedded Redis address).
func startAllInOne(t *testing.T, bin, dataDir string) *allInOne {
	t.Helper()
	s := &allInOne{stderr: &e2etest.Buffer{}, exited: make(chan error, 1)}
	s.cmd = exec.Command(filepath.Join(bin, "server"), "-addr", "127.0.0.1:0", "-embedded-redis", "127.0.0.1:0")
	s.cmd.Dir = t.TempDir()
	s.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "DATA_DIR=" + dataDir}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	s.cmd.WaitDelay = 5 * time.Second
	s.cmd.Stderr = s.stderr
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !s.reaped {
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("server %d stderr:\n%s", s.cmd.Process.Pid, s.stderr)
		}
	})
	urlRE := regexp.MustCompile(`Upload a CSV:\s+(http://127\.0\.0\.1:\d+)/`)
	redisRE := regexp.MustCompile(`embedded Redis at redis://(127\.0\.0\.1:\d+)/0`)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		s.exited <- s.cmd.Wait()
	}()
	timeout := time.After(60 * time.Second)
	for s.base == "" || s.redisAddr == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				s.reaped = true
				t.Fatalf("server exited before printing its URL: %v", <-s.exited)
			}
			if m := urlRE.FindStringSubmatch(l); m != nil {
				s.base = m[1]
			}
			if m := redisRE.FindStringSubmatch(l); m != nil {
				s.redisAddr = m[1]
			}
		case <-timeout:
			t.Fatal("no URL and embedded Redis address printed within 60s")
		}
	}
	go func() {
		for range lines {
		}
	}()
	return s
}

// redisPid reads the embedded redis-server's pid file in dataDir.
func redisPid(t *testing.T, dataDir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "redis", "redis.pid"))
	if err != nil {
		t.Fatalf("embedded redis-server pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// running reports whether pid runs (not a zombie).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

// persistentKeys reads every key without a TTL (volatile ones, such as
// heartbeats, may expire between two reads) with its type and content,
// in an order-independent form.
func persistentKeys(t *testing.T, addr string) map[string]string {
	t.Helper()
	c, err := redis.Dial("tcp", addr, redis.DialConnectTimeout(5*time.Second), redis.DialReadTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	keys, err := redis.Strings(c.Do("KEYS", "*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range keys {
		ttl, err := redis.Int64(c.Do("PTTL", k))
		if err != nil || ttl != -1 {
			continue
		}
		typ, err := redis.String(c.Do("TYPE", k))
		if err != nil {
			t.Fatal(err)
		}
		var vals []string
		switch typ {
		case "string":
			v, err := redis.String(c.Do("GET", k))
			if err != nil {
				t.Fatal(err)
			}
			vals = []string{v}
		case "list":
			vals, err = redis.Strings(c.Do("LRANGE", k, 0, -1))
		case "hash":
			var m map[string]string
			m, err = redis.StringMap(c.Do("HGETALL", k))
			for f, v := range m {
				vals = append(vals, f+"="+v)
			}
			slices.Sort(vals)
		case "set":
			vals, err = redis.Strings(c.Do("SMEMBERS", k))
			slices.Sort(vals)
		case "zset":
			vals, err = redis.Strings(c.Do("ZRANGE", k, 0, -1, "WITHSCORES"))
		default:
			vals = []string{"(" + typ + ")"}
		}
		if err != nil {
			t.Fatalf("%s %s: %v", typ, k, err)
		}
		out[k] = typ + ":" + strings.Join(vals, "\x00")
	}
	return out
}

// rowJobsInRedis counts the jobs waiting in token queues or held in
// reliable fetch's in-flight lists.
func rowJobsInRedis(keys map[string]string) int {
	n := 0
	for k, v := range keys {
		if strings.HasPrefix(k, "queue:report-") || strings.HasPrefix(k, "pallarel:inflight|") {
			if body, ok := strings.CutPrefix(v, "list:"); ok && body != "" {
				n += strings.Count(body, "\x00") + 1
			}
		}
	}
	return n
}

// TestAllInOneSurvivesKill is `make run` killed with SIGKILL mid-run and
// started again on its data directory: the embedded redis-server child
// does not outlive the server, every persistent Redis key is there again
// byte for byte (the queued row jobs included), and a run completed before
// the kill keeps its status and ZIP.
func TestAllInOneSurvivesKill(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	goBuild(t, bin, nil, "./cmd/server")
	dataDir := t.TempDir()

	srv := startAllInOne(t, bin, dataDir)
	done := e2etest.Submit(t, srv.base, e2etest.CSV(5), "text")
	if st := e2etest.WaitEnded(t, srv.base, done.Token, runTimeout); st.State != "completed" || st.DoneCount != 5 {
		t.Fatalf("first run: %+v", st)
	}
	zipBefore := e2etest.Download(t, srv.base, done.Token)

	// A run big enough to be caught mid-way: XLSX rows take milliseconds each.
	const rows = 3000
	mid := e2etest.Submit(t, srv.base, e2etest.CSV(rows), "xlsx")
	deadline := time.Now().Add(runTimeout)
	for {
		st := e2etest.GetStatus(t, srv.base, mid.Token)
		if st.DoneCount > 0 && st.DoneCount < rows/2 {
			break
		}
		if st.State == "completed" || st.DoneCount >= rows/2 || time.Now().After(deadline) {
			t.Fatalf("could not catch the run mid-way: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Freeze the server so Redis holds still, read it, then kill the server.
	childPid := redisPid(t, dataDir)
	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // commands already sent reach Redis
	before := persistentKeys(t, srv.redisAddr)
	queued := rowJobsInRedis(before)
	if queued == 0 {
		t.Fatalf("no row jobs queued or in flight mid-run; keys: %d", len(before))
	}
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-srv.exited
	srv.reaped = true
	deadline = time.Now().Add(15 * time.Second)
	for running(childPid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(childPid, syscall.SIGKILL)
			t.Fatalf("embedded redis-server %d outlived its SIGKILLed server by 15s", childPid)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The data directory alone, read back by a fresh embedded Redis, holds
	// exactly what Redis held when the server was killed.
	emb, err := embeddedredis.Start(context.Background(), embeddedredis.Config{Dir: filepath.Join(dataDir, "redis"), Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	after := persistentKeys(t, emb.Addr)
	if err := emb.Close(); err != nil {
		t.Fatal(err)
	}
	for k, v := range before {
		if got, ok := after[k]; !ok {
			t.Errorf("key %s lost", k)
		} else if got != v {
			t.Errorf("key %s changed: %.200q, want %.200q", k, got, v)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("key %s appeared", k)
		}
	}
	t.Logf("%d persistent keys survived, %d row jobs queued or in flight", len(before), queued)

	// The server comes back on the same directory, with the finished run
	// intact and the interrupted one still known.
	again := startAllInOne(t, bin, dataDir)
	if st := e2etest.GetStatus(t, again.base, done.Token); st.State != "completed" || st.DoneCount != 5 {
		t.Errorf("finished run after restart: %+v", st)
	}
	if zipAfter := e2etest.Download(t, again.base, done.Token); !bytes.Equal(zipAfter, zipBefore) {
		t.Errorf("finished run's ZIP changed after restart (%d bytes, was %d)", len(zipAfter), len(zipBefore))
	}
	e2etest.CheckTextReport(t, e2etest.ReadZip(t, zipBefore), 5)
	// (It may have been killed during its split, before its total was known.)
	if st := e2etest.GetStatus(t, again.base, mid.Token); st.DoneCount == 0 || st.State == "failed" {
		t.Errorf("interrupted run after restart: %+v", st)
	}
	newPid := redisPid(t, dataDir)
	if err := again.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-again.exited:
		again.reaped = true
		if err != nil {
			t.Fatalf("server after SIGTERM: %v", err)
		}
	case <-time.After(stopWait):
		t.Fatalf("server did not exit within %v of SIGTERM", stopWait)
	}
	if running(newPid) {
		t.Errorf("embedded redis-server %d still runs after its server stopped", newPid)
	}
}
