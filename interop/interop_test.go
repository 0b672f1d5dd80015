// Package interop proves that Pallarel's Go Sidekiq layer is indistinguishable
// from Ruby Sidekiq 6.4.1, 7.3.2 and 8.0.6 (what the Rails app runs): Ruby clients feed the Go server, the Go
// client feeds real Ruby `sidekiq` processes, and Ruby's API and Web UI read
// and act on what the Go server writes. The Ruby peers come from
// shared/tools/sidekiq-peers (beside the repository); a missing peer fails the tests.
package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/sidekiq/sidekiqtest"
)

// peers runs real Ruby Sidekiq (see the script's header).

// versions are the Ruby Sidekiq majors every test runs against.
var versions = []string{"6", "7", "8"}

// rubyTimeout bounds every Ruby script, so a hang fails instead of blocking CI.
const rubyTimeout = 90 * time.Second

// runRuby runs testdata script with Ruby Sidekiq version ("6", "7" or "8") and
// returns its stdout; a non-zero exit fails the test with stderr.
func runRuby(t *testing.T, version, script string, env ...string) string {
	t.Helper()
	if version != "6" {
		e2etest.RubyDir(t) // 7 and 8 run in the chroot, which must see the directory
	}
	ctx, cancel := context.WithTimeout(context.Background(), rubyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2etest.SidekiqPeers(t), "ruby", version, script)
	cmd.Dir = e2etest.RubyDir(t)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sidekiq-peers ruby %s %s: %v (ctx: %v)\nstderr:\n%s\nstdout:\n%s",
			version, script, err, ctx.Err(), stderr.String(), stdout.String())
	}
	return stdout.String()
}

// resultMarker prefixes the one line of JSON a Ruby script emits (see
// testdata/common.rb), so that Sidekiq's log lines cannot be mistaken for it.
const resultMarker = "INTEROP_RESULT "

// rubyResult runs a script and decodes its result line into v.
func rubyResult(t *testing.T, version, script string, v any, env ...string) {
	t.Helper()
	out := runRuby(t, version, script, env...)
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, resultMarker); ok {
			if err := json.Unmarshal([]byte(rest), v); err != nil {
				t.Fatalf("%s: decode result: %v\n%s", script, err, rest)
			}
			return
		}
	}
	t.Fatalf("%s printed no %q line:\n%s", script, resultMarker, out)
}

// rubySidekiq is a running Ruby `sidekiq` server process.
type rubySidekiq struct {
	cmd    *exec.Cmd
	output *e2etest.Buffer
	done   chan error
}

// startRubySidekiq starts `sidekiq -r ./testdata/jobs.rb -q <queue> -c 2`
// of the given version on db, and stops it with SIGTERM at cleanup.
func startRubySidekiq(t *testing.T, version string, db *redistest.DB, queue string) *rubySidekiq {
	t.Helper()
	if version != "6" {
		e2etest.RubyDir(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*rubyTimeout)
	cmd := exec.CommandContext(ctx, e2etest.SidekiqPeers(t), "sidekiq", version,
		"-r", "./testdata/jobs.rb", "-q", queue, "-c", "2", "-t", "3")
	cmd.Dir = e2etest.RubyDir(t)
	cmd.Env = append(os.Environ(), "REDIS_URL="+db.URL(), "RACK_ENV=test")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	out := &e2etest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start sidekiq %s: %v", version, err)
	}
	r := &rubySidekiq{cmd: cmd, output: out, done: make(chan error, 1)}
	go func() { r.done <- cmd.Wait(); cancel() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			select { // never hang the suite on a process that will not die
			case <-r.done:
			case <-time.After(10 * time.Second):
			}
			t.Errorf("ruby sidekiq %s ignored SIGTERM for 20s:\n%s", version, out.String())
		}
	})
	return r
}

// startServer runs a Go server on db in the background and stops it at
// cleanup. It returns the server and a channel that yields Run's result.
func startServer(t *testing.T, db *redistest.DB, reg *sidekiq.Registry, opts sidekiq.Options) (*sidekiq.Server, <-chan error) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 300 * time.Millisecond
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Second
	}
	srv, err := sidekiq.NewServer(db.Pool, reg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	result := make(chan error, 1)
	go func() {
		err := srv.Run(ctx)
		done <- err
		result <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("go server did not stop")
		}
	})
	waitFor(t, 10*time.Second, "go process registered", func() bool {
		n, _ := redis.Int(db.Do(t, "SISMEMBER", "processes", srv.Identity()), nil)
		return n == 1
	})
	return srv, result
}

// waitFor is sidekiqtest.WaitFor: cond polled until it holds, the test
// failed after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	sidekiqtest.WaitFor(t, d, what, cond)
}

// ran is one job run by a Go handler.
type ran struct {
	Class, HandlerClass, JID, Queue string
	Args                            []json.RawMessage // the job's args as read
	Arguments                       []json.RawMessage // the handler's arguments (ActiveJob decoded)
	Job                             *sidekiq.Job
}

// recorder is a Go handler that records every job it runs.
type recorder struct {
	mu   sync.Mutex
	runs map[string]ran // by jid
}

func newRecorder() *recorder { return &recorder{runs: map[string]ran{}} }

func (r *recorder) handle(_ context.Context, j *sidekiq.Job) error {
	args, err := j.Arguments()
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs[j.JID] = ran{Class: j.Class, HandlerClass: j.HandlerClass(), JID: j.JID, Queue: j.Queue,
		Args: j.Args, Arguments: args, Job: j.Clone()}
	return nil
}

// wait returns the runs of jids once all of them ran.
func (r *recorder) wait(t *testing.T, d time.Duration, jids ...string) map[string]ran {
	t.Helper()
	var missing []string
	deadline := time.Now().Add(d)
	for {
		r.mu.Lock()
		missing = missing[:0]
		for _, j := range jids {
			if _, ok := r.runs[j]; !ok {
				missing = append(missing, j)
			}
		}
		if len(missing) == 0 {
			out := make(map[string]ran, len(r.runs))
			for k, v := range r.runs {
				out[k] = v
			}
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("jobs %v did not run within %s", missing, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// canonical re-encodes JSON so that key order and spacing do not matter.
func canonical(t *testing.T, raw []byte) string {
	t.Helper()
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("canonical %s: %v", raw, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// joinArgs renders args as one JSON array.
func joinArgs(args []json.RawMessage) string {
	parts := make([]string, len(args))
	for i, a := range args {
		parts[i] = string(a)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// within reports whether ts (float epoch seconds) is within a minute of now.
func within(ts float64, now time.Time) bool {
	d := now.Sub(time.Unix(0, int64(ts*1e9)))
	return d < time.Minute && d > -time.Minute
}

// errHandler fails every job with msg.
func errHandler(msg string) sidekiq.Handler {
	return func(context.Context, *sidekiq.Job) error { return errors.New(msg) }
}

func mustRegister(t *testing.T, reg *sidekiq.Registry, h sidekiq.Handler, classes ...string) {
	t.Helper()
	if err := reg.Register(h, classes[0], classes[1:]...); err != nil {
		t.Fatal(err)
	}
}

func mustJob(t *testing.T, class, queue string, args ...any) *sidekiq.Job {
	t.Helper()
	j, err := sidekiq.NewJob(class, args...)
	if err != nil {
		t.Fatal(err)
	}
	j.Queue = queue
	return j
}

func mustPush(t *testing.T, c *sidekiq.Client, j *sidekiq.Job) string {
	t.Helper()
	jid, err := c.Push(context.Background(), j)
	if err != nil {
		t.Fatalf("push %s: %v", j.Class, err)
	}
	return jid
}

func redisInt(t *testing.T, db *redistest.DB, cmd string, args ...any) int {
	t.Helper()
	n, err := redis.Int(db.Do(t, cmd, args...), nil)
	if err != nil && !errors.Is(err, redis.ErrNil) {
		t.Fatalf("%s %v: %v", cmd, args, err)
	}
	return n
}

func redisString(t *testing.T, db *redistest.DB, cmd string, args ...any) string {
	t.Helper()
	s, err := redis.String(db.Do(t, cmd, args...), nil)
	if err != nil && !errors.Is(err, redis.ErrNil) {
		t.Fatalf("%s %v: %v", cmd, args, err)
	}
	return s
}

func dialectName(d sidekiq.Dialect) string { return fmt.Sprintf("dialect%d", d) }
