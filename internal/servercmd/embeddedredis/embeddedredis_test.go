package embeddedredis

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// The helper process: started by TestChildDiesWithParent as this test
// binary with EMBEDDEDREDIS_HELPER_DIR set, it starts the embedded Redis,
// prints its pid and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("EMBEDDEDREDIS_HELPER_DIR"); dir != "" {
		s, err := Start(context.Background(), Config{Dir: dir, Addr: "127.0.0.1:0",
			Binary: os.Getenv("EMBEDDEDREDIS_HELPER_BIN"), SnapshotEvery: time.Second})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Printf("pid %d addr %s\n", s.Pid, s.Addr)
		select {}
	}
	os.Exit(m.Run())
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Log = testLog(t)
	cfg.Addr = "127.0.0.1:0"
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func do(t *testing.T, addr, cmd string, args ...any) any {
	t.Helper()
	c, err := redis.Dial("tcp", addr, redis.DialConnectTimeout(5*time.Second), redis.DialReadTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v, err := c.Do(cmd, args...)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return v
}

func waitGone(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive after %v", pid, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRestartKeepsData: what one server wrote, the next one on the same
// directory reads back, and Close stops the child.
func TestRestartKeepsData(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := start(t, Config{Dir: dir})
	if s.Kind != KindRedisServer || s.Pid == 0 {
		t.Fatalf("kind %s pid %d: want a redis-server child", s.Kind, s.Pid)
	}
	for i := range 1000 {
		do(t, s.Addr, "LPUSH", "queue:report", fmt.Sprintf(`{"jid":"%d"}`, i))
	}
	do(t, s.Addr, "SET", "stat:processed", "42")
	pid := s.Pid
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid, time.Second)
	if _, err := os.Stat(filepath.Join(dir, "appendonlydir")); err != nil {
		t.Fatalf("no append-only file: %v", err)
	}

	s2 := start(t, Config{Dir: dir})
	if n, _ := redis.Int(do(t, s2.Addr, "LLEN", "queue:report"), nil); n != 1000 {
		t.Errorf("LLEN queue:report = %d after restart, want 1000", n)
	}
	if v, _ := redis.String(do(t, s2.Addr, "GET", "stat:processed"), nil); v != "42" {
		t.Errorf("stat:processed = %q", v)
	}
}

// TestSecondServerRefused: one directory, one embedded Redis.
func TestSecondServerRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start(t, Config{Dir: dir})
	s, err := Start(context.Background(), Config{Dir: dir, Addr: "127.0.0.1:0", Log: testLog(t)})
	if err == nil {
		s.Close()
		t.Fatal("a second embedded Redis started on the same directory")
	}
	if !strings.Contains(err.Error(), "used by another server") {
		t.Errorf("error = %v", err)
	}
}

// TestLeftoverIsStopped: a redis-server left running on the directory by a
// server that is gone (here: started by hand, holding the port asked for)
// is stopped, and its data is read by the new child.
func TestLeftoverIsStopped(t *testing.T) {
	t.Parallel()
	dir, _ := filepath.Abs(t.TempDir())
	addr, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(addr, ":")
	orphan := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--dir", dir,
		"--pidfile", filepath.Join(dir, "redis.pid"), "--appendonly", "yes", "--save", "", "--logfile", filepath.Join(dir, "redis.log"))
	if err := orphan.Start(); err != nil {
		t.Fatalf("redis-server must be installed: %v", err)
	}
	go orphan.Wait() // reap it, as init would
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitReady(ctx, addr, 0, make(chan struct{})); err != nil {
		t.Fatal(err)
	}
	do(t, addr, "SET", "left", "behind")
	for !fileHas(filepath.Join(dir, "redis.pid"), strconv.Itoa(orphan.Process.Pid)) {
		time.Sleep(20 * time.Millisecond)
	}

	// Through a symbolic link: the kernel reports the left-over's working
	// directory resolved.
	link := filepath.Join(t.TempDir(), "data-link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	s, err := Start(context.Background(), Config{Dir: link, Addr: addr, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if alive(orphan.Process.Pid) {
		t.Errorf("left-over redis-server %d still runs", orphan.Process.Pid)
	}
	if s.Addr != addr {
		t.Errorf("addr = %s, want the port the left-over held, %s", s.Addr, addr)
	}
	if v, _ := redis.String(do(t, s.Addr, "GET", "left"), nil); v != "behind" {
		t.Errorf("GET left = %q: the left-over's data was not kept", v)
	}
}

func fileHas(path, s string) bool {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b)) == s
}

// TestStalePidFileAndBusyPort: a pid file naming a live process that is not
// a redis-server of the directory (here: this test) is ignored, not
// killed, and a port held by someone else falls back to a free one.
func TestStalePidFileAndBusyPort(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "redis.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	busy := start(t, Config{Dir: t.TempDir()}) // some other Redis holds a port
	s, err := Start(context.Background(), Config{Dir: dir, Addr: busy.Addr, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Addr == busy.Addr {
		t.Fatalf("started on the busy address %s", s.Addr)
	}
	do(t, s.Addr, "PING")
	do(t, busy.Addr, "PING")
}

// TestChildDiesWithParent: the redis-server child does not outlive a
// parent killed with SIGKILL, and the data the parent wrote survives.
func TestChildDiesWithParent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "EMBEDDEDREDIS_HELPER_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	var addr string
	if _, err := fmt.Sscanf(line, "pid %d addr %s", &pid, &addr); err != nil {
		t.Fatalf("helper said %q: %v", line, err)
	}
	do(t, addr, "RPUSH", "queue:report", "a", "b", "c")
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitGone(t, pid, 15*time.Second)

	s := start(t, Config{Dir: dir})
	if n, _ := redis.Int(do(t, s.Addr, "LLEN", "queue:report"), nil); n != 3 {
		t.Errorf("LLEN queue:report = %d after the parent was killed, want 3", n)
	}
}

// TestMiniredisFallback: without redis-server, miniredis, whose TTLs run
// and whose data survives a restart (every type, with its TTL).
func TestMiniredisFallback(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := start(t, Config{Dir: dir, Binary: KindMiniredis})
	if s.Kind != KindMiniredis || s.Pid != 0 {
		t.Fatalf("kind %s pid %d", s.Kind, s.Pid)
	}
	do(t, s.Addr, "SET", "str", "v\x00binary\xff")
	do(t, s.Addr, "RPUSH", "queue:report", "a", "b", "c")
	do(t, s.Addr, "HSET", "h", "f1", "1", "f2", "2")
	do(t, s.Addr, "SADD", "queues", "report", "default")
	do(t, s.Addr, "ZADD", "schedule", "1764500000.123456", "job1", "1764500001.5", "job2")
	do(t, s.Addr, "SET", "beat", "x", "EX", "3600")
	do(t, s.Addr, "SET", "short", "x", "PX", "500")
	// TTLs run on the wall clock (miniredis's own clock stands still).
	deadline := time.Now().Add(15 * time.Second)
	for do(t, s.Addr, "GET", "short") != nil {
		if time.Now().After(deadline) {
			t.Fatal("a 500 ms key did not expire in 15 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := start(t, Config{Dir: dir, Binary: KindMiniredis})
	if v, _ := redis.String(do(t, s2.Addr, "GET", "str"), nil); v != "v\x00binary\xff" {
		t.Errorf("str = %q", v)
	}
	if v, _ := redis.Strings(do(t, s2.Addr, "LRANGE", "queue:report", 0, -1), nil); strings.Join(v, ",") != "a,b,c" {
		t.Errorf("list = %q", v)
	}
	if v, _ := redis.StringMap(do(t, s2.Addr, "HGETALL", "h"), nil); v["f1"] != "1" || v["f2"] != "2" || len(v) != 2 {
		t.Errorf("hash = %v", v)
	}
	if n, _ := redis.Int(do(t, s2.Addr, "SCARD", "queues"), nil); n != 2 {
		t.Errorf("set has %d members", n)
	}
	if v, _ := redis.Strings(do(t, s2.Addr, "ZRANGE", "schedule", 0, -1, "WITHSCORES"), nil); strings.Join(v, ",") != "job1,1764500000.123456,job2,1764500001.5" {
		t.Errorf("zset = %q", v)
	}
	if ttl, _ := redis.Int(do(t, s2.Addr, "TTL", "beat"), nil); ttl <= 3000 || ttl > 3600 {
		t.Errorf("TTL beat = %d after restart", ttl)
	}
}

// TestMiniredisSurvivesKill: a killed server's miniredis loses at most the
// writes after its last snapshot.
func TestMiniredisSurvivesKill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "EMBEDDEDREDIS_HELPER_DIR="+dir, "EMBEDDEDREDIS_HELPER_BIN="+KindMiniredis)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	var addr string
	if _, err := fmt.Sscanf(line, "pid %d addr %s", &pid, &addr); err != nil {
		t.Fatalf("helper said %q: %v", line, err)
	}
	do(t, addr, "RPUSH", "queue:report", "a", "b", "c")
	snap := filepath.Join(dir, snapshotFile)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(snap); err == nil && strings.Contains(string(b), "queue:report") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no snapshot with the list within 20 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	s := start(t, Config{Dir: dir, Binary: KindMiniredis})
	if n, _ := redis.Int(do(t, s.Addr, "LLEN", "queue:report"), nil); n != 3 {
		t.Errorf("LLEN queue:report = %d after the kill, want 3", n)
	}
}
