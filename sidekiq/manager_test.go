package sidekiq

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

// The manager feeds every processor from one fetch loop: each job runs
// once, never more than concurrency at a time, and once quiet and stopped
// nothing is left in flight.
func TestManagerRunsEachJobOnce(t *testing.T) {
	for _, tc := range []struct {
		reliable bool
		prefetch prefetchPlan
	}{
		{true, prefetchPlan{}}, {false, prefetchPlan{}},
		{true, prefetchPlan{depth: 4, most: 4}}, {false, prefetchPlan{depth: 4, most: 4}},
		{true, prefetchPlan{depth: 4, most: MaxPrefetch, auto: true}},
	} {
		reliable := tc.reliable
		t.Run(fmt.Sprintf("reliable=%v/prefetch=%+v", reliable, tc.prefetch), func(t *testing.T) {
			db := redistest.New(t)
			identity := ""
			if reliable {
				identity = "host:1:abcdefabcdef"
			}
			f := testFetcher(t, db, identity, QueueWeight{Name: "q"})
			const jobs, concurrency = 200, 4
			for i := range jobs {
				db.Do(t, "LPUSH", "queue:q", fmt.Sprintf("job-%03d", i))
			}
			var (
				mu           sync.Mutex
				ran          = map[string]int{}
				running, top int
			)
			all := make(chan struct{})
			quiet := make(chan struct{})
			m := &manager{fetch: f, concurrency: concurrency, prefetch: tc.prefetch, quiet: quiet, log: quietLogger(),
				run: func(ctx context.Context, proc int, u *UnitOfWork) {
					mu.Lock()
					running++
					top = max(top, running)
					mu.Unlock()
					time.Sleep(100 * time.Microsecond)
					mu.Lock()
					running--
					ran[string(u.Raw)]++
					if len(ran) == jobs {
						close(all)
					}
					mu.Unlock()
					f.ack(u)
				}}
			f.startAcker()
			m.start(context.Background())
			select {
			case <-all:
			case <-time.After(30 * time.Second):
				t.Fatalf("ran %d of %d jobs", len(ran), jobs)
			}
			close(quiet)
			m.wait()
			if err := f.release(context.Background()); err != nil {
				t.Fatal(err)
			}
			for k, n := range ran {
				if n != 1 {
					t.Errorf("%s ran %d times", k, n)
				}
			}
			if top > concurrency {
				t.Errorf("%d jobs ran at once, concurrency %d", top, concurrency)
			}
			if n, _ := redis.Int(db.Do(t, "LLEN", "pallarel:inflight|host:1:abcdefabcdef|q"), nil); n != 0 {
				t.Errorf("%d jobs left in flight", n)
			}
			if n, _ := redis.Int(db.Do(t, "LLEN", "queue:q"), nil); n != 0 {
				t.Errorf("%d jobs left in the queue", n)
			}
		})
	}
}
