package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/launcher/ecstest"
)

// procs is a launcher of pretend workers that end when told to (or by
// themselves, through end), and says which still run.
type procs struct {
	mu   sync.Mutex
	n    int
	live map[string]string // id → token
}

func (p *procs) launcher() launcher.Func {
	return launcher.Func{
		LaunchFunc: func(ctx context.Context, req launcher.Request) (launcher.Task, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if !req.Extra {
				for id, tok := range p.live {
					if tok == req.Token {
						return launcher.Task{ID: id}, nil
					}
				}
			}
			p.n++
			id := fmt.Sprintf("w%d", p.n)
			p.live[id] = req.Token
			return launcher.Task{ID: id, StartedAt: time.Now()}, nil
		},
		StopFunc: func(ctx context.Context, task launcher.Task, reason string) error { p.end(task.ID); return nil },
		StateFunc: func(ctx context.Context, task launcher.Task) (launcher.TaskState, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			_, ok := p.live[task.ID]
			return launcher.TaskState{Running: ok}, nil
		},
	}
}

func (p *procs) end(id string) { p.mu.Lock(); delete(p.live, id); p.mu.Unlock() }

func (p *procs) count(token string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, t := range p.live {
		if token == "" || t == token {
			n++
		}
	}
	return n
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func newFleet(t *testing.T, cfg Config) (*Fleet, *procs, *clock) {
	t.Helper()
	db := redistest.New(t)
	p := &procs{live: map[string]string{}}
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg.Now = clk.Now
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	f, err := New(p.launcher(), db.Pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f, p, clk
}

func req(tok string) launcher.Request { return launcher.Request{Token: tok, Queue: "report-" + tok} }

func wantWait(t *testing.T, err error, ahead int) {
	t.Helper()
	var we *launcher.WaitError
	if !errors.As(err, &we) || we.Ahead != ahead || we.Error() != fmt.Sprintf("waiting for a worker (%d ahead)", ahead) {
		t.Fatalf("err = %v, want waiting with %d ahead", err, ahead)
	}
}

// The total cap holds; runs beyond it wait in arrival order, each told how
// many are ahead; a run with a worker gets it back without a new slot; a
// worker that ends by itself frees its slot; a run that stops asking (it
// ended) leaves the queue.
func TestCapsQueueRunsInOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, p, clk := newFleet(t, Config{MaxWorkers: 2, ReconcileEvery: time.Nanosecond})
	for _, tok := range []string{"a", "b"} {
		if _, err := f.Launch(ctx, req(tok)); err != nil {
			t.Fatal(err)
		}
	}
	if again, err := f.Launch(ctx, req("a")); err != nil || again.ID != "w1" {
		t.Fatalf("a's relaunch: %v, %v; want its live worker w1", again, err)
	}
	_, err := f.Launch(ctx, req("c"))
	wantWait(t, err, 0)
	_, err = f.Launch(ctx, req("d"))
	wantWait(t, err, 1)
	_, err = f.Launch(ctx, req("c")) // c asks again: still first in line
	wantWait(t, err, 0)
	if ahead, waiting, _ := f.Waiting(ctx, "d"); !waiting || ahead != 1 {
		t.Fatalf("Waiting(d) = %d, %v", ahead, waiting)
	}
	// d may not jump the queue when a slot frees: c is ahead.
	p.end("w1") // a's worker ended by itself
	clk.Advance(time.Second)
	_, err = f.Launch(ctx, req("d"))
	wantWait(t, err, 1)
	if _, err := f.Launch(ctx, req("c")); err != nil {
		t.Fatalf("c's turn: %v", err)
	}
	if p.count("") != 2 {
		t.Fatalf("%d workers, want 2", p.count(""))
	}
	// d stops asking (its run ended); e arrives later and is first.
	clk.Advance(2 * time.Minute)
	_, err = f.Launch(ctx, req("e"))
	wantWait(t, err, 0)
	if _, waiting, _ := f.Waiting(ctx, "d"); waiting {
		t.Fatal("a run that stopped asking is still queued")
	}
	// Stop frees the slot at once.
	live, _ := f.Live(ctx)
	if err := f.Stop(ctx, launcher.Task{ID: live[0]}, "done"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Launch(ctx, req("e")); err != nil {
		t.Fatalf("e after a stop: %v", err)
	}
}

// A reservation whose launch failed is given back; a platform wait keeps
// the run at the head of the queue.
func TestFailedLaunchGivesBackItsSlot(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	calls := 0
	inner := launcher.Func{LaunchFunc: func(ctx context.Context, r launcher.Request) (launcher.Task, error) {
		calls++
		if calls == 1 {
			return launcher.Task{}, &launcher.WaitError{Ahead: -1, Err: errors.New("no capacity")}
		}
		return launcher.Task{ID: fmt.Sprint("t", calls)}, nil
	}}
	f, err := New(inner, db.Pool, Config{MaxWorkers: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := f.Launch(ctx, req("a")); err == nil {
		t.Fatal("the platform's wait was lost")
	}
	if live, _ := f.Live(ctx); len(live) != 0 {
		t.Fatalf("slots %v after a failed launch", live)
	}
	_, err = f.Launch(ctx, req("b")) // b arrived after a: a keeps its turn
	wantWait(t, err, 1)
	if task, err := f.Launch(ctx, req("a")); err != nil || task.ID != "t2" {
		t.Fatalf("a: %v, %v", task, err)
	}
}

// Plan: rows left over one worker's rate in the time left, capped; a
// draining queue needs fewer; a late run gets the cap.
func TestPlan(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := launcher.Progress{Total: 10_000, Done: 1_000, StartedAt: start}
	for _, tc := range []struct {
		name      string
		p         launcher.Progress
		perWorker float64
		at        time.Duration
		want      int
	}{
		{"not measured", p, 0, 10 * time.Second, 2},
		{"on time with one", p, 100, 10 * time.Second, 1}, // 9000 rows, 100/s, 110 s left
		{"needs three", p, 30, 10 * time.Second, 3},       // 9000/(30*110) = 2.7
		{"late: the cap", p, 10, 5 * time.Minute, 8},      // floor of 12 s left
		{"draining", launcher.Progress{Total: 10_000, Done: 9_990, Queued: 15, SplitDone: true, StartedAt: start}, 0.1, 100 * time.Second, 2}, // 5 by rate, 2 by queue
		{"drained", launcher.Progress{Total: 10_000, Done: 9_990, Queued: 0, SplitDone: true, StartedAt: start}, 1, 100 * time.Second, 1},
	} {
		if got := Plan(tc.p, tc.perWorker, 2, 2*time.Minute, 8, 10, start.Add(tc.at)); got != tc.want {
			t.Errorf("%s: %d workers, want %d", tc.name, got, tc.want)
		}
	}
}

// Scale adds workers to a run that would miss its target, up to the
// per-run cap and the total cap (a waiting run's first worker comes before
// another run's extras), and stops extras, never the first worker, as the
// queue drains.
func TestScaleGrowsAndShrinks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, p, clk := newFleet(t, Config{MaxWorkers: 5, MaxPerRun: 4, Target: time.Minute, MinMeasure: time.Second})
	first, err := f.Launch(ctx, req("big"))
	if err != nil {
		t.Fatal(err)
	}
	start := clk.Now()
	prog := launcher.Progress{Token: "big", Queue: "report-big", Total: 6000, StartedAt: start, FirstWorker: first.ID}
	scale := func(done, queued int, split bool) {
		t.Helper()
		clk.Advance(2 * time.Second)
		prog.Done, prog.Queued, prog.SplitDone = done, queued, split
		if err := f.Scale(ctx, prog); err != nil {
			t.Fatal(err)
		}
	}
	scale(0, 4000, false)  // the first measurement starts
	scale(40, 4000, false) // 20 rows/s for one worker: 5960 rows in 56 s need 6 → the cap, 4
	if n := p.count("big"); n != 4 {
		t.Fatalf("%d workers after a slow start, want 4", n)
	}
	// Another run arrives: it gets the last free slot; a third waits, and
	// "big" may not take a slot it needs.
	if _, err := f.Launch(ctx, req("other")); err != nil {
		t.Fatal(err)
	}
	_, err = f.Launch(ctx, req("third"))
	wantWait(t, err, 0)
	// The queue drains: 3000 rows left would need 3 workers, but the 15
	// rows waiting in the queue keep only 2 busy; then none, 1.
	scale(3000, 15, true)
	f.Close()
	if n := p.count("big"); n != 2 {
		t.Fatalf("%d workers with 15 rows queued, want 2", n)
	}
	scale(5995, 0, true)
	f.Close()
	p.mu.Lock()
	_, firstLives := p.live[first.ID]
	p.mu.Unlock()
	if n := p.count("big"); n != 1 || !firstLives {
		t.Fatalf("%d workers once drained (first alive: %v), want the first alone", n, firstLives)
	}
	// The freed slots went back: the third run gets one.
	if _, err := f.Launch(ctx, req("third")); err != nil {
		t.Fatalf("third after the drain: %v", err)
	}
}

// RunTask throttling past the SDK's retries is a wait, not a failure: the
// fleet keeps the run's turn (a later run does not take its slot), and the
// next ask, once the throttling cleared, starts the task.
func TestThrottledLaunchWaitsItsTurn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := redistest.New(t)
	fake := ecstest.New(t)
	ecs, err := launcher.NewECS(launcher.ECSConfig{Cluster: "pallarel", TaskDefinition: "pallarel-token-worker", Subnets: []string{"subnet-a"}},
		fake.Client(3), launcher.WithSleep(func(context.Context, time.Duration) error { return nil }),
		launcher.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(ecs, db.Pool, Config{MaxWorkers: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	fake.Throttle["RunTask"] = 3 // the SDK's three attempts
	_, err = f.Launch(ctx, req("a"))
	var we *launcher.WaitError
	if !errors.As(err, &we) || we.Ahead != -1 || !strings.Contains(err.Error(), "ThrottlingException") {
		t.Fatalf("throttled launch: %v, want a WaitError of the throttling", err)
	}
	if n := strings.Count(fmt.Sprint(fake.Ops()), "RunTask"); n != 3 {
		t.Fatalf("%d RunTask calls, want the SDK's 3", n)
	}
	if live, _ := f.Live(ctx); len(live) != 0 {
		t.Fatalf("slots %v held by a launch that started nothing", live)
	}
	_, err = f.Launch(ctx, req("b")) // b came later: a keeps its turn
	wantWait(t, err, 1)
	task, err := f.Launch(ctx, req("a"))
	if err != nil || len(fake.Tasks()) != 1 || fake.Tasks()[0].ARN != task.ID {
		t.Fatalf("a once the throttling cleared: %v, %v; tasks %+v", task, err, fake.Tasks())
	}
}
