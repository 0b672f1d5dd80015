package launcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the worker: with LAUNCHER_HELPER set it writes
// its args, env and a grandchild's pid to HELPER_OUT and waits for a signal.
func TestMain(m *testing.M) {
	if mode := os.Getenv("LAUNCHER_HELPER"); mode != "" {
		runHelper(mode)
		return
	}
	os.Exit(m.Run())
}

func runHelper(mode string) {
	switch mode {
	case "parent":
		runParentHelper()
		return
	case "self-stop":
		runSelfStopHelper()
		return
	case "exit-3":
		os.Exit(3)
	}
	if mode == "ignore-term" {
		signal.Ignore(syscall.SIGTERM)
	}
	// A grandchild in the same process group must die with us.
	child := exec.Command("sleep", "300")
	if err := child.Start(); err != nil {
		os.Exit(3)
	}
	out := fmt.Sprintf("args=%s\ntoken=%s\nqueue=%s\nextra=%s\nchild=%d\n",
		strings.Join(os.Args[1:], ","), os.Getenv("TOKEN"), os.Getenv("QUEUE"), os.Getenv("EXTRA"), child.Process.Pid)
	tmp := os.Getenv("HELPER_OUT") + ".tmp"
	os.WriteFile(tmp, []byte(out), 0o644)
	os.Rename(tmp, os.Getenv("HELPER_OUT"))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT)
	<-sig
	os.Exit(0)
}

// runParentHelper is a launcher's process: it starts one "normal" worker
// (Detach from PARENT_DETACH), writes its pid to PARENT_OUT and waits to be
// killed.
func runParentHelper() {
	l, err := NewLocal(LocalConfig{
		Command: []string{os.Args[0]},
		Env:     []string{"LAUNCHER_HELPER=normal", "HELPER_OUT=" + os.Getenv("PARENT_OUT") + ".worker"},
		Detach:  os.Getenv("PARENT_DETACH") == "true",
	})
	if err != nil {
		os.Exit(3)
	}
	task, err := l.Launch(context.Background(), Request{Token: "t", Queue: "q"})
	if err != nil {
		os.Exit(4)
	}
	tmp := os.Getenv("PARENT_OUT") + ".tmp"
	os.WriteFile(tmp, []byte("worker="+strings.TrimPrefix(task.ID, "local-")+"\n"), 0o644)
	os.Rename(tmp, os.Getenv("PARENT_OUT"))
	select {}
}

// runSelfStopHelper is a worker that stops its own task through
// SelfStopping, as the finalizer does in a token task, and exits 0 on the
// SIGTERM that this sends it.
func runSelfStopHelper() {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	id, err := SelfID(context.Background(), SelfEnv{LaunchedBy: os.Getenv(LaunchedByEnv)}, nil)
	if err != nil || id != "local-"+strconv.Itoa(os.Getpid()) {
		os.Exit(5)
	}
	l := SelfStopping(Noop{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, id, nil, nil)
	if err := l.Stop(context.Background(), Task{ID: id}, "report finished"); err != nil {
		os.Exit(6)
	}
	select {
	case <-term:
		os.Exit(0)
	case <-time.After(20 * time.Second):
		os.Exit(7)
	}
}

// waitFile polls for path with a deadline.
func waitFile(t *testing.T, path string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			kv := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				k, v, _ := strings.Cut(line, "=")
				kv[k] = v
			}
			return kv
		}
		if time.Now().After(deadline) {
			t.Fatalf("helper never wrote %s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid exists (a reaped process does not).
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// waitGone polls until pid is gone or a zombie: the grandchild is
// re-parented when its parent dies, and who reaps it then is not ours.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for alive(pid) {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(b), ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still alive", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newTestLocal(t *testing.T, mode string, grace time.Duration) (*Local, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "helper.out")
	l, err := NewLocal(LocalConfig{
		Command:   []string{os.Args[0], "-q", "{queue}", "--token={token}", "-c", "10"},
		Env:       []string{"LAUNCHER_HELPER=" + mode, "HELPER_OUT=" + out, "EXTRA=yes"},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		StopGrace: grace,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, out
}

func TestLocalLaunchAndStop(t *testing.T) {
	t.Parallel()
	l, out := newTestLocal(t, "normal", 10*time.Second)
	ctx := context.Background()
	task, err := l.Launch(ctx, Request{Token: testToken, Queue: testQueue})
	if err != nil {
		t.Fatal(err)
	}
	kv := waitFile(t, out)
	if kv["args"] != "-q,"+testQueue+",--token="+testToken+",-c,10" || kv["token"] != testToken || kv["queue"] != testQueue || kv["extra"] != "yes" {
		t.Fatalf("helper saw %v", kv)
	}
	pid, _ := strconv.Atoi(strings.TrimPrefix(task.ID, "local-"))
	child, _ := strconv.Atoi(kv["child"])
	if !alive(pid) || !alive(child) {
		t.Fatal("worker not running")
	}
	// Same token: the live process is reused.
	again, err := l.Launch(ctx, Request{Token: testToken, Queue: testQueue})
	if err != nil || again.ID != task.ID {
		t.Fatalf("relaunch = %+v, %v", again, err)
	}
	if got := l.Running(); len(got) != 1 {
		t.Fatalf("running = %v", got)
	}
	start := time.Now()
	if err := l.Stop(ctx, task, "test done"); err != nil {
		t.Fatal(err)
	}
	// SIGTERM is enough for a cooperative worker: no grace wait.
	if time.Since(start) > 5*time.Second {
		t.Fatalf("stop took %s", time.Since(start))
	}
	// Stop waited for the worker, so it is reaped (no zombie) already.
	if alive(pid) {
		t.Fatalf("worker %d still exists after Stop", pid)
	}
	waitGone(t, child) // the process group got the signal too
	if got := l.Running(); len(got) != 0 {
		t.Fatalf("running after stop = %v", got)
	}
	// Stopping again, or an unknown task, is fine.
	if err := l.Stop(ctx, task, "again"); err != nil {
		t.Fatal(err)
	}
	if err := l.Stop(ctx, Task{ID: "local-1"}, "unknown"); err != nil {
		t.Fatal(err)
	}
}

func TestLocalKillsAfterGrace(t *testing.T) {
	t.Parallel()
	l, out := newTestLocal(t, "ignore-term", 300*time.Millisecond)
	task, err := l.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err != nil {
		t.Fatal(err)
	}
	kv := waitFile(t, out)
	start := time.Now()
	if err := l.Stop(context.Background(), task, "test"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("stop returned after %s, before the grace period", d)
	}
	pid, _ := strconv.Atoi(strings.TrimPrefix(task.ID, "local-"))
	if alive(pid) {
		t.Fatal("worker survived SIGKILL")
	}
	child, _ := strconv.Atoi(kv["child"])
	waitGone(t, child)
}

func TestLocalCloseStopsAll(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, err := NewLocal(LocalConfig{
		Command: []string{os.Args[0]},
		Env:     []string{"LAUNCHER_HELPER=normal"},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for i := range 3 {
		// Each token gets its own output file through its own Env: use a
		// launcher per file by prefixing the command with env(1).
		l.cfg.Command = []string{"env", "HELPER_OUT=" + filepath.Join(dir, strconv.Itoa(i)), os.Args[0]}
		task, err := l.Launch(context.Background(), Request{Token: fmt.Sprintf("tok-%d", i), Queue: "q"})
		if err != nil {
			t.Fatal(err)
		}
		waitFile(t, filepath.Join(dir, strconv.Itoa(i)))
		pid, _ := strconv.Atoi(strings.TrimPrefix(task.ID, "local-"))
		pids = append(pids, pid)
	}
	if got := l.Running(); len(got) != 3 {
		t.Fatalf("running = %v", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d alive after Close", pid)
		}
	}
}

func TestLocalRelaunchAfterExit(t *testing.T) {
	t.Parallel()
	l, err := NewLocal(LocalConfig{Command: []string{"true"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	first, err := l.Launch(context.Background(), Request{Token: "t", Queue: "q"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(l.Running()) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("true never exited")
		}
		time.Sleep(10 * time.Millisecond)
	}
	second, err := l.Launch(context.Background(), Request{Token: "t", Queue: "q"})
	if err != nil || second.ID == first.ID {
		t.Fatalf("relaunch = %+v, %v (first %+v)", second, err, first)
	}
	l.Close()
}

func TestLocalErrors(t *testing.T) {
	t.Parallel()
	if _, err := NewLocal(LocalConfig{}); err == nil {
		t.Error("empty command accepted")
	}
	l, _ := NewLocal(LocalConfig{Command: []string{filepath.Join(t.TempDir(), "no-such-binary")}})
	if _, err := l.Launch(context.Background(), Request{Token: "t", Queue: "q"}); err == nil {
		t.Error("missing binary launched")
	}
	if _, err := l.Launch(context.Background(), Request{Queue: "q"}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("no token = %v", err)
	}
}

func TestFuncAndNoop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var mu sync.Mutex
	var got []string
	f := Func{
		LaunchFunc: func(ctx context.Context, req Request) (Task, error) {
			mu.Lock()
			got = append(got, "launch "+req.Queue)
			mu.Unlock()
			return Task{ID: "inproc-" + req.Token}, nil
		},
		StopFunc: func(ctx context.Context, task Task, reason string) error {
			mu.Lock()
			got = append(got, "stop "+task.ID+" "+reason)
			mu.Unlock()
			return nil
		},
	}
	task, err := f.Launch(ctx, Request{Token: "t", Queue: "q"})
	if err != nil || task.ID != "inproc-t" {
		t.Fatalf("launch = %+v, %v", task, err)
	}
	if err := f.Stop(ctx, task, "done"); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[launch q stop inproc-t done]" {
		t.Fatalf("calls = %v", got)
	}
	if _, err := (Func{}).Launch(ctx, Request{Token: "t", Queue: "q"}); err == nil {
		t.Error("Func without LaunchFunc launched")
	}
	if err := (Func{}).Stop(ctx, task, "x"); err != nil {
		t.Errorf("Func without StopFunc = %v", err)
	}

	var buf bytes.Buffer
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	n := Noop{Logger: slog.New(slog.NewTextHandler(&buf, nil)), Now: func() time.Time { return now }}
	task, err = n.Launch(ctx, Request{Token: "tok", Queue: "q"})
	if err != nil || task.ID != "" || !task.StartedAt.Equal(now) {
		t.Fatalf("noop launch = %+v, %v", task, err)
	}
	if err := n.Stop(ctx, Task{ID: "x"}, "why"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "token=tok") || !strings.Contains(buf.String(), "reason=why") {
		t.Fatalf("noop log = %s", buf.String())
	}
}

// waitStopped polls TaskState until the worker is seen stopped.
func waitStopped(t *testing.T, w Watcher, task Task) TaskState {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := w.TaskState(context.Background(), task)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Running {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still running", task.ID)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLocalTaskState(t *testing.T) {
	t.Parallel()
	l, err := NewLocal(LocalConfig{
		Command: []string{os.Args[0]},
		Env:     []string{"LAUNCHER_HELPER=exit-3"},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	task, err := l.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err != nil {
		t.Fatal(err)
	}
	if st := waitStopped(t, l, task); st.Reason != "worker exit status 3" {
		t.Fatalf("state = %+v", st)
	}
	// Seen stopped: Launch starts a new worker, not the dead one.
	next, err := l.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err != nil || next.ID == task.ID {
		t.Fatalf("relaunch = %+v, %v", next, err)
	}
	waitStopped(t, l, next)
	// A task this launcher does not know is stopped.
	if st, _ := l.TaskState(context.Background(), Task{ID: "local-999999999"}); st.Running || !strings.Contains(st.Reason, "no such local worker") {
		t.Fatalf("unknown = %+v", st)
	}

	// A worker stopped by Stop reports its signal.
	l2, out := newTestLocal(t, "normal", 10*time.Second)
	task, err = l2.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err != nil {
		t.Fatal(err)
	}
	waitFile(t, out)
	if st, _ := l2.TaskState(context.Background(), task); !st.Running {
		t.Fatalf("live worker = %+v", st)
	}
	if err := l2.Stop(context.Background(), task, "test"); err != nil {
		t.Fatal(err)
	}
	if st := waitStopped(t, l2, task); st.Reason != "worker signal: terminated" {
		t.Fatalf("stopped worker = %+v", st)
	}
}

// A worker dies with the process that launched it, even one killed by
// SIGKILL, unless Detach is set.
func TestLocalWorkersDieWithTheirParent(t *testing.T) {
	t.Parallel()
	for _, detach := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "parent.out")
		parent := exec.Command(os.Args[0])
		parent.Env = append(os.Environ(), "LAUNCHER_HELPER=parent", "PARENT_OUT="+out, fmt.Sprintf("PARENT_DETACH=%t", detach))
		if err := parent.Start(); err != nil {
			t.Fatal(err)
		}
		kv := waitFile(t, out)
		worker, _ := strconv.Atoi(kv["worker"])
		waitFile(t, out+".worker") // the worker is up
		t.Cleanup(func() { syscall.Kill(-worker, syscall.SIGKILL) })
		parent.Process.Kill()
		parent.Wait()
		if !detach {
			waitGone(t, worker)
			continue
		}
		time.Sleep(200 * time.Millisecond) // a parent-death signal would have arrived by now
		if !alive(worker) {
			t.Fatal("detached worker died with its parent")
		}
	}
}

// The finalizer's Stop of the task it runs in ends that task: a Local
// worker stops itself and exits 0.
func TestSelfStoppingLocalWorker(t *testing.T) {
	t.Parallel()
	l, err := NewLocal(LocalConfig{
		Command: []string{os.Args[0]},
		Env:     []string{"LAUNCHER_HELPER=self-stop"},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	task, err := l.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err != nil {
		t.Fatal(err)
	}
	if st := waitStopped(t, l, task); st.Reason != "worker exit status 0" {
		t.Fatalf("state = %+v", st)
	}
}
