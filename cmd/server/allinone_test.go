package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/e2etest"
)

// buildTimeout bounds one `go build`.
const buildTimeout = 3 * time.Minute

// goBuild builds pkgs (relative to the repository root) into dir with the
// extra environment env, bounded by buildTimeout.
func goBuild(t *testing.T, dir string, env []string, pkgs ...string) {
	t.Helper()
	goBuildTimeout(t, buildTimeout, dir, env, pkgs...)
}

// goBuildTimeout is goBuild with its own bound.
func goBuildTimeout(t *testing.T, timeout time.Duration, dir string, env []string, pkgs ...string) {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = "/usr/local/go/bin/go"
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := append([]string{"build", "-o", dir + string(os.PathSeparator)}, pkgs...)
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v (ctx: %v)\n%s", strings.Join(args, " "), err, ctx.Err(), out)
	}
}

// TestAllInOneBinaryWithNoServices is `make run` for a new user: the built
// server, an environment with only PATH and HOME (no REDIS_URL, no
// database), an empty working directory. It must come up with its embedded
// Redis-protocol server, SQLite and local files in ./data, print its URL,
// and take a CSV to a ZIP with its in-process workers.
func TestAllInOneBinaryWithNoServices(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	goBuild(t, bin, nil, "./cmd/server")
	cwd, home := t.TempDir(), t.TempDir()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "server"), "-addr", "127.0.0.1:0", "-embedded-redis", "127.0.0.1:0")
	cmd.Dir = cwd
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	stderr := &e2etest.Buffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	reaped := false
	defer func() {
		if !reaped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("server stderr:\n%s", stderr)
		}
	}()

	// The welcome text names the page and the embedded Redis (real ports).
	urlRE := regexp.MustCompile(`Upload a CSV:\s+(http://127\.0\.0\.1:\d+)/`)
	redisRE := regexp.MustCompile(`embedded Redis at redis://(127\.0\.0\.1:\d+)/0`)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	var base, redisAddr string
	var welcome strings.Builder
	timeout := time.After(60 * time.Second)
	for base == "" || redisAddr == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				reaped = true
				<-exited
				t.Fatalf("server exited before printing its URL:\n%s", welcome.String())
			}
			welcome.WriteString(l + "\n")
			if m := urlRE.FindStringSubmatch(l); m != nil {
				base = m[1]
			}
			if m := redisRE.FindStringSubmatch(l); m != nil {
				redisAddr = m[1]
			}
		case <-timeout:
			t.Fatalf("no URL and embedded Redis address printed within 60s:\n%s", welcome.String())
		}
	}
	go func() { // keep draining so the server never blocks on stdout
		for range lines {
		}
	}()
	if strings.HasSuffix(redisAddr, ":0") {
		t.Fatalf("embedded Redis reported as %s, not its real port", redisAddr)
	}

	sub := e2etest.Submit(t, base, e2etest.CSV(5), "text")
	st := e2etest.WaitEnded(t, base, sub.Token, runTimeout)
	if st.State != "completed" || st.DoneCount != 5 {
		t.Fatalf("status: %+v", st)
	}
	e2etest.CheckTextReport(t, e2etest.ReadZip(t, e2etest.Download(t, base, sub.Token)), 5)

	// Everything lives in ./data of the working directory.
	for _, p := range []string{"data/pallarel.sqlite3", "data/storage/reports/" + sub.Token + ".zip"} {
		if _, err := os.Stat(filepath.Join(cwd, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	// The embedded Redis answers other clients, as the welcome text says.
	c, err := redis.Dial("tcp", redisAddr, redis.DialConnectTimeout(5*time.Second), redis.DialReadTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("dial embedded redis %s: %v", redisAddr, err)
	}
	n, err := redis.Int(c.Do("SCARD", "processes"))
	c.Close()
	if err != nil || n < 1 {
		t.Errorf("embedded redis: SCARD processes = %d, %v; want the report worker", n, err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		reaped = true
		if err != nil {
			t.Fatalf("server after SIGTERM: %v", err)
		}
	case <-time.After(stopWait):
		t.Fatalf("server did not exit within %v of SIGTERM", stopWait)
	}
}

// stopWait bounds how long a stopped server may take to exit.
const stopWait = 45 * time.Second
