package sidekiq_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/sidekiq"
)

// buildTestworker compiles internal/testworker once per test into a temp dir.
func buildTestworker(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "testworker")
	out, err := exec.Command(goBin, "build", "-o", bin, "github.com/pallarel/pallarel/internal/testworker").CombinedOutput()
	if err != nil {
		t.Fatalf("go build testworker: %v\n%s", err, out)
	}
	return bin
}

// worker is a running testworker process whose stderr goes to a file.
type worker struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // set when done is closed
}

func startWorker(t *testing.T, bin, name string, db *redistest.DB, args ...string) *worker {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "REDIS_URL="+db.URL())
	cmd.Stderr = f
	cmd.Stdout = f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	w := &worker{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		w.err = cmd.Wait()
		f.Close()
		close(w.done)
	}()
	t.Cleanup(func() {
		select {
		case <-w.done:
		default:
			_ = cmd.Process.Kill()
			<-w.done
		}
		if t.Failed() {
			t.Logf("%s log tail:\n%s", name, tail(logPath, 20))
		}
	})
	return w
}

// wait returns the exit code, failing the test if the process does not end
// within d.
func (w *worker) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(d):
		t.Fatalf("%s did not exit within %s", w.name, d)
	}
	var ee *exec.ExitError
	if errors.As(w.err, &ee) {
		return ee.ExitCode()
	}
	if w.err != nil {
		t.Fatalf("%s: %v", w.name, w.err)
	}
	return 0
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// pollUntil polls cond every 20 ms until it holds or d passes. It fails the
// test early if the worker exits.
func pollUntil(t *testing.T, d time.Duration, what string, w *worker, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if w != nil {
			select {
			case <-w.done:
				t.Fatalf("%s exited (%v) while waiting for %s", w.name, w.err, what)
			default:
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func scardDone(t *testing.T, db *redistest.DB) int {
	t.Helper()
	n, err := redis.Int(db.Do(t, "SCARD", "testworker:done"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pushSleepJobs pushes n SleepJobs of ms(i) milliseconds on queue and returns
// their jids.
func pushSleepJobs(t *testing.T, db *redistest.DB, queue string, n int, ms func(i int) int) []string {
	t.Helper()
	jobs := make([]*sidekiq.Job, n)
	for i := range jobs {
		j, err := sidekiq.NewJob("Pallarel::SleepJob", ms(i))
		if err != nil {
			t.Fatal(err)
		}
		j.Queue = queue
		jobs[i] = j
	}
	jids, err := sidekiq.NewClient(db.Pool, sidekiq.ClientOptions{}).PushBulk(t.Context(), jobs)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	return jids
}

// checkAllRanOnce asserts that exactly jids ran, that queue and every
// in-flight list are empty, and returns how many jobs ran more than once.
func checkAllRan(t *testing.T, db *redistest.DB, queue string, jids []string) int {
	t.Helper()
	done, err := redis.Strings(db.Do(t, "SMEMBERS", "testworker:done"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[string]bool, len(jids))
	for _, j := range jids {
		want[j] = true
	}
	for _, j := range done {
		if !want[j] {
			t.Errorf("jid %s ran but was never pushed", j)
		}
		delete(want, j)
	}
	if len(want) > 0 {
		t.Errorf("%d pushed jobs never ran (lost)", len(want))
	}
	if n, _ := redis.Int(db.Do(t, "LLEN", "queue:"+queue), nil); n != 0 {
		t.Errorf("queue:%s still holds %d jobs", queue, n)
	}
	keys, err := redis.Strings(db.Do(t, "KEYS", "pallarel:inflight|*"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if n, _ := redis.Int(db.Do(t, "LLEN", k), nil); n != 0 {
			t.Errorf("in-flight list %s still holds %d jobs", k, n)
		}
	}
	dups := 0
	for start := 0; start < len(jids); start += 1000 {
		args := make([]any, 0, 1000)
		for _, j := range jids[start:min(start+1000, len(jids))] {
			args = append(args, "testworker:runs:"+j)
		}
		runs, err := redis.Ints(db.Do(t, "MGET", args...), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			if r > 1 {
				dups++
			}
		}
	}
	return dups
}

// TestKillWorkerLosesNoJob SIGKILLs a worker mid-run: a second worker must
// recover its in-flight jobs once its heartbeat expires, so every job runs,
// and only the jobs the killed worker was running (at most its concurrency)
// may run twice.
func TestKillWorkerLosesNoJob(t *testing.T) {
	bin := buildTestworker(t)
	db := redistest.New(t)
	const total, conc = 10000, 10
	jids := pushSleepJobs(t, db, "kill", total, func(i int) int { return 2 + i%4 })
	args := []string{"-q", "kill", "-c", "10", "--process-ttl", "3s"}

	a := startWorker(t, bin, "worker-a", db, args...)
	pollUntil(t, 30*time.Second, "worker A to finish 1000 jobs", a, func() bool { return scardDone(t, db) > 1000 })
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := a.wait(t, 10*time.Second); code != -1 {
		t.Fatalf("worker A exit code %d, want -1 (killed)", code)
	}
	killedAt := scardDone(t, db)

	b := startWorker(t, bin, "worker-b", db, args...)
	start := time.Now()
	pollUntil(t, 90*time.Second, "all 10000 jobs done", b, func() bool { return scardDone(t, db) == total })
	t.Logf("A did %d jobs before SIGKILL; B finished the rest in %s", killedAt, time.Since(start).Round(time.Millisecond))
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := b.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("worker B exit code %d after SIGTERM, want 0", code)
	}
	if !strings.Contains(tail(b.log, 1<<30), "recovered jobs of a dead process") {
		t.Error("worker B never logged recovering worker A's in-flight jobs")
	}
	dups := checkAllRan(t, db, "kill", jids)
	t.Logf("%d of %d jobs ran twice", dups, total)
	if dups > conc {
		t.Errorf("%d jobs ran twice, want at most %d (the jobs A was running when killed)", dups, conc)
	}
}

// TestGracefulStopRequeuesSlowJobs sends SIGTERM with -t 1 while slow jobs
// run: the worker gives them back and exits 0, and a second worker runs
// every job.
func TestGracefulStopRequeuesSlowJobs(t *testing.T) {
	bin := buildTestworker(t)
	db := redistest.New(t)
	const total, conc = 30, 10
	jids := pushSleepJobs(t, db, "slow", total, func(int) int { return 3000 })
	args := []string{"-q", "slow", "-c", "10", "-t", "1", "--process-ttl", "3s"}

	a := startWorker(t, bin, "worker-a", db, args...)
	// The first wave ends after 3 s; the second one is then running.
	pollUntil(t, 30*time.Second, "worker A to finish its first jobs", a, func() bool { return scardDone(t, db) >= conc })
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	if code := a.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("worker A exit code %d after SIGTERM, want 0", code)
	}
	t.Logf("worker A stopped %s after SIGTERM with %d jobs done", time.Since(stopped).Round(time.Millisecond), scardDone(t, db))
	alog := tail(a.log, 1<<30)
	if !strings.Contains(alog, "pushed back to its queue") {
		t.Errorf("worker A gave no running job back at the -t deadline")
	}
	if n, _ := redis.Int(db.Do(t, "SCARD", "processes"), nil); n != 0 {
		t.Errorf("worker A left %d processes registered", n)
	}

	b := startWorker(t, bin, "worker-b", db, args...)
	pollUntil(t, 40*time.Second, "all jobs done", b, func() bool { return scardDone(t, db) == total })
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := b.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("worker B exit code %d after SIGTERM, want 0", code)
	}
	// Jobs cancelled at the deadline return before recording, so normally
	// none runs twice; one finishing in the instant of the deadline may.
	if dups := checkAllRan(t, db, "slow", jids); dups > conc {
		t.Errorf("%d jobs ran twice, want at most %d", dups, conc)
	}
}

// TestWorkerRejectsBadFlags checks that the worker binary refuses a bad
// command line with exit code 2 and a message naming the problem.
func TestWorkerRejectsBadFlags(t *testing.T) {
	bin := buildTestworker(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-q", "a,x"}, `-q "a,x": weight must be a whole number`},
		{[]string{"-c", "0"}, "-c 0: want a whole number >= 1"},
		{[]string{"--fetch", "foo"}, `--fetch "foo": want reliable or basic`},
		{[]string{"--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{[]string{"-r", "app.rb"}, "-r loads Ruby code"},
	}
	var wg sync.WaitGroup
	for _, tc := range cases {
		wg.Go(func() {
			cmd := exec.Command(bin, tc.args...)
			// A closed port: the worker must refuse before connecting.
			cmd.Env = append(os.Environ(), "REDIS_URL=redis://127.0.0.1:1/0")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Errorf("%v: err %v, want exit code 2", tc.args, err)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("%v: stderr %q does not say %q", tc.args, stderr.String(), tc.want)
			}
		})
	}
	wg.Wait()
}
