package sidekiq

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

// With prefetch a server holds jobs beyond its running ones: they are in
// flight (reliable fetch) but not busy, and on quiet or stop they go back
// to their queue at once, in their order, without running.
func TestPrefetchedJobsGoBackInOrder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		basic bool
		stop  bool
	}{
		{"reliable/quiet", false, false},
		{"reliable/stop", false, true},
		{"basic/quiet", true, false},
		{"basic/stop", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := redistest.New(t)
			const conc, total = 3, 10
			release := make(chan struct{})
			var (
				mu  sync.Mutex
				ran []string
			)
			reg := NewRegistry()
			reg.Register(func(ctx context.Context, j *Job) error {
				mu.Lock()
				ran = append(ran, j.JID)
				mu.Unlock()
				select {
				case <-release:
				case <-ctx.Done():
				}
				return nil
			}, "Block")
			srv, err := NewServer(db.Pool, reg, Options{Queues: []QueueWeight{{Name: "q"}}, Concurrency: conc,
				BasicFetch: tc.basic, Prefetch: prefetchFor(tc.basic, conc), Timeout: 20 * time.Second, Logger: quietLogger(),
				HeartbeatInterval: 100 * time.Millisecond, ProcessTTL: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if d := srv.opts.prefetch.depth; d != conc {
				t.Fatalf("prefetch %d, want concurrency %d", d, conc)
			}
			jids := make([]string, total)
			for i := range jids {
				j, _ := NewJob("Block", i)
				j.Queue = "q"
				if jids[i], err = srv.Client().Push(context.Background(), j); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- srv.Run(ctx) }()
			id := srv.Identity()
			inflight := "pallarel:inflight|" + id + "|q"
			// 3 running, 3 prefetched, 4 left in the queue.
			waitFor(t, 5*time.Second, "3 running and 3 prefetched", func() bool {
				n, _ := redis.Int(db.Do(t, "LLEN", "queue:q"), nil)
				busy, _ := redis.Int(db.Do(t, "HGET", id, "busy"), nil)
				return n == total-2*conc && busy == conc
			})
			if !tc.basic {
				if n, _ := redis.Int(db.Do(t, "LLEN", inflight), nil); n != 2*conc {
					t.Fatalf("%d jobs in flight, want %d (running and prefetched)", n, 2*conc)
				}
			}
			if n := srv.busy(); n != conc {
				t.Errorf("busy %d, want %d (prefetched jobs are not busy)", n, conc)
			}
			if n, _ := redis.Int(db.Do(t, "HLEN", id+":work"), nil); n != conc {
				t.Errorf("work hash has %d entries, want %d", n, conc)
			}
			if tc.stop {
				cancel()
			} else {
				srv.Quiet()
			}
			// Back at once, while the running jobs still run.
			waitFor(t, 5*time.Second, "prefetched jobs back in the queue", func() bool {
				n, _ := redis.Int(db.Do(t, "LLEN", "queue:q"), nil)
				return n == total-conc
			})
			queue, _ := redis.Strings(db.Do(t, "LRANGE", "queue:q", 0, -1), nil)
			var order []string // rightmost (next to run) first
			for _, raw := range slices.Backward(queue) {
				j, err := ParseJob([]byte(raw))
				if err != nil {
					t.Fatal(err)
				}
				order = append(order, j.JID)
			}
			if !slices.Equal(order, jids[conc:]) {
				t.Errorf("queue order after give-back:\n got %v\nwant %v", order, jids[conc:])
			}
			if !tc.basic {
				if n, _ := redis.Int(db.Do(t, "LLEN", inflight), nil); n != conc {
					t.Errorf("%d jobs in flight after give-back, want the %d running", n, conc)
				}
			}
			close(release)
			if tc.stop {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			} else {
				waitFor(t, 5*time.Second, "running jobs settled", func() bool {
					n, _ := redis.Int(db.Do(t, "LLEN", inflight), nil)
					return n == 0 && srv.busy() == 0
				})
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			slices.Sort(ran)
			want := slices.Clone(jids[:conc])
			slices.Sort(want)
			if !slices.Equal(ran, want) {
				t.Errorf("ran %v, want only the first %d %v", ran, conc, want)
			}
			if n, _ := redis.Int(db.Do(t, "LLEN", "queue:q"), nil); n != total-conc {
				t.Errorf("queue holds %d after shutdown, want %d", n, total-conc)
			}
		})
	}
}

// Prefetch 0 (Options.Prefetch < 0) fetches only for free processors.
func TestPrefetchDisabled(t *testing.T) {
	db := redistest.New(t)
	release := make(chan struct{})
	reg := NewRegistry()
	reg.Register(func(ctx context.Context, j *Job) error { <-release; return nil }, "Block")
	srv := startServer(t, db, reg, Options{Queues: []QueueWeight{{Name: "q"}}, Concurrency: 2, Prefetch: -1})
	defer close(release)
	for i := range 5 {
		j, _ := NewJob("Block", i)
		j.Queue = "q"
		srv.Client().Push(context.Background(), j)
	}
	waitFor(t, 5*time.Second, "2 running", func() bool { return srv.busy() == 2 })
	inflight := "pallarel:inflight|" + srv.Identity() + "|q"
	// Give a wrong prefetch a moment to show.
	time.Sleep(100 * time.Millisecond)
	if n, _ := redis.Int(db.Do(t, "LLEN", inflight), nil); n != 2 {
		t.Errorf("%d in flight, want 2", n)
	}
	if n, _ := redis.Int(db.Do(t, "LLEN", "queue:q"), nil); n != 3 {
		t.Errorf("queue holds %d, want 3", n)
	}
}

func TestPrefetchOption(t *testing.T) {
	auto := func(c int) prefetchPlan { return prefetchPlan{depth: c, most: MaxPrefetch, auto: true} }
	fixed := func(n int) prefetchPlan { return prefetchPlan{depth: n, most: n} }
	for _, tc := range []struct {
		conc, prefetch int
		want           prefetchPlan
	}{
		{0, 0, auto(5)}, {10, 0, auto(10)}, {10, -1, fixed(0)}, {10, 4, fixed(4)}, {10, 10, fixed(10)},
		{2, 300, fixed(300)}, {2000, 0, auto(MaxPrefetch)},
	} {
		o := Options{Concurrency: tc.conc, Prefetch: tc.prefetch}
		if err := o.withDefaults(); err != nil || o.prefetch != tc.want {
			t.Errorf("concurrency %d prefetch %d: got %+v, %v; want %+v", tc.conc, tc.prefetch, o.prefetch, err, tc.want)
		}
	}
	o := Options{Concurrency: 2, Prefetch: MaxPrefetch + 1}
	if err := o.withDefaults(); err == nil {
		t.Error("prefetch above MaxPrefetch accepted")
	}
	for _, tc := range []struct {
		args []string
		want prefetchPlan
	}{
		{[]string{"-c", "8"}, auto(8)}, {[]string{"-c", "8", "--prefetch", "0"}, fixed(0)},
		{[]string{"-c", "8", "--prefetch", "3"}, fixed(3)}, {[]string{"-c", "8", "--prefetch", "200"}, fixed(200)},
	} {
		cli, err := ParseCLI(tc.args, func(string) (string, bool) { return "", false }, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := cli.Options.withDefaults(); err != nil || cli.Options.prefetch != tc.want {
			t.Errorf("%v: prefetch %+v, %v; want %+v", tc.args, cli.Options.prefetch, err, tc.want)
		}
	}
}

// The idle timeout stops a prefetching server only once every job has
// run: prefetched jobs count as work, as running ones do.
func TestIdleTimeoutWithPrefetch(t *testing.T) {
	db := redistest.New(t)
	var (
		mu  sync.Mutex
		ran = map[string]bool{}
	)
	reg := NewRegistry()
	reg.Register(func(ctx context.Context, j *Job) error {
		time.Sleep(30 * time.Millisecond) // a job longer than a tick of the idle watch
		mu.Lock()
		ran[j.JID] = true
		mu.Unlock()
		return nil
	}, "Short")
	srv, err := NewServer(db.Pool, reg, Options{Queues: []QueueWeight{{Name: "q"}}, Concurrency: 2,
		IdleTimeout: 20 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	const total = 12
	for i := range total {
		j, _ := NewJob("Short", i)
		j.Queue = "q"
		if _, err := srv.Client().Push(context.Background(), j); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("idle timeout never stopped the server")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ran) != total {
		t.Errorf("ran %d of %d jobs before the idle stop", len(ran), total)
	}
	if n, _ := redis.Int(db.Do(t, "LLEN", "queue:q"), nil); n != 0 {
		t.Errorf("%d jobs left in the queue", n)
	}
	if n, _ := redis.Int(db.Do(t, "LLEN", "pallarel:inflight|"+srv.Identity()+"|q"), nil); n != 0 {
		t.Errorf("%d jobs left in flight", n)
	}
}

// prefetchFor is the Prefetch option that gives conc: the default with
// reliable fetch; basic fetch prefetches only when asked (by default a
// killed process would lose its prefetched jobs too).
func prefetchFor(basic bool, conc int) int {
	if basic {
		return conc
	}
	return 0
}

func TestPrefetchDefaults(t *testing.T) {
	for _, tc := range []struct {
		basic bool
		want  prefetchPlan
	}{{false, prefetchPlan{depth: 4, most: MaxPrefetch, auto: true}}, {true, prefetchPlan{}}} {
		o := Options{Queues: []QueueWeight{{Name: "q"}}, Concurrency: 4, BasicFetch: tc.basic}
		if err := o.withDefaults(); err != nil {
			t.Fatal(err)
		}
		if o.prefetch != tc.want {
			t.Errorf("basic fetch %v: default prefetch %+v, want %+v", tc.basic, o.prefetch, tc.want)
		}
	}
}

// The adaptive depth follows the processors' pace: short jobs raise it to
// what finishes in the window (capped), slow jobs bring it to zero, and
// shrinking owes tokens rather than giving back fetched jobs.
func TestDepthTuner(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	d := newDepthTuner(prefetchPlan{depth: 10, most: 300, auto: true}, t0)
	if add := d.tune(t0.Add(tuneEvery/2), 5000); add != 0 || d.depth != 10 {
		t.Fatalf("measured before tuneEvery: add %d depth %d", add, d.depth)
	}
	// 40,000 jobs/s: 200 finish in 5 ms; the depth goes there at once.
	at, done := t0.Add(100*time.Millisecond), int64(4000)
	if add := d.tune(at, done); add != 190 || d.depth != 200 {
		t.Fatalf("40,000 jobs/s: add %d depth %d; want 190, 200", add, d.depth)
	}
	// 100,000 jobs/s: 500 finish in 5 ms, capped at 300.
	at, done = at.Add(100*time.Millisecond), done+10_000
	if add := d.tune(at, done); add != 100 || d.depth != 300 || d.debt != 0 {
		t.Fatalf("100,000 jobs/s: add %d depth %d debt %d; want 100, 300, 0", add, d.depth, d.debt)
	}
	// 100 jobs/s (10 ms jobs): under one job in the window, so none; it
	// comes down halfway each time.
	at, done = at.Add(100*time.Millisecond), done+10
	if add := d.tune(at, done); add != 0 || d.depth != 150 || d.debt != 150 {
		t.Fatalf("slowing down: add %d depth %d debt %d; want 0, 150, 150", add, d.depth, d.debt)
	}
	for range 20 {
		at, done = at.Add(100*time.Millisecond), done+10
		if add := d.tune(at, done); add != 0 {
			t.Fatalf("shrinking added %d tokens", add)
		}
	}
	if d.depth != 0 || d.debt != 300 {
		t.Fatalf("slow jobs: depth %d debt %d; want 0, 300", d.depth, d.debt)
	}
	// The debt is paid by tokens coming back before any is used.
	if n := d.pay(250); n != 0 || d.debt != 50 {
		t.Fatalf("pay 250: left %d, debt %d", n, d.debt)
	}
	if n := d.pay(60); n != 10 || d.debt != 0 {
		t.Fatalf("pay 60: left %d, debt %d", n, d.debt)
	}
	// Growing again pays what is still owed before adding tokens.
	d.debt = 40
	at, done = at.Add(100*time.Millisecond), done+3_000
	if add := d.tune(at, done); d.depth != 150 || add != 110 || d.debt != 0 {
		t.Fatalf("grow with debt: depth %d add %d debt %d; want 150, 110, 0", d.depth, add, d.debt)
	}
	// A fixed depth never moves.
	f := newDepthTuner(prefetchPlan{depth: 7, most: 7}, t0)
	if add := f.tune(t0.Add(time.Second), 1_000_000); add != 0 || f.depth != 7 {
		t.Fatalf("fixed depth moved: add %d depth %d", add, f.depth)
	}
}

// With the default (adaptive) prefetch, slow jobs are not prefetched once
// their pace is known: the jobs not running stay in the queue, where
// another process could take them.
func TestAdaptivePrefetchLeavesSlowJobsInTheQueue(t *testing.T) {
	db := redistest.New(t)
	reg := NewRegistry()
	reg.Register(func(ctx context.Context, j *Job) error {
		time.Sleep(50 * time.Millisecond)
		return nil
	}, "Slow")
	const conc, total = 2, 60
	srv := startServer(t, db, reg, Options{Queues: []QueueWeight{{Name: "q"}}, Concurrency: conc})
	for i := range total {
		j, _ := NewJob("Slow", i)
		j.Queue = "q"
		if _, err := srv.Client().Push(context.Background(), j); err != nil {
			t.Fatal(err)
		}
	}
	inflight := "pallarel:inflight|" + srv.Identity() + "|q"
	// It starts at the concurrency, then measures 40 jobs/s: far under one
	// job in 5 ms. After a second the first prefetched jobs have run.
	time.Sleep(time.Second)
	for range 10 {
		n, _ := redis.Int(db.Do(t, "LLEN", inflight), nil)
		if n > conc {
			t.Fatalf("%d jobs in flight with %d processors of slow jobs: still prefetching", n, conc)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
