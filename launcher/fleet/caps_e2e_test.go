package fleet_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// sampler records, every few milliseconds, how many token workers live.
type sampler struct {
	mu      sync.Mutex
	max     int
	samples []sample
	stop    chan struct{}
	done    chan struct{}
}

type sample struct {
	at      time.Time
	total   int
	byQueue map[string]int
}

func (c *cluster) sample(every time.Duration) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			n, byQ := c.liveWorkers()
			s.mu.Lock()
			s.max = max(s.max, n)
			s.samples = append(s.samples, sample{time.Now(), n, byQ})
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) end() { close(s.stop); <-s.done }

// Twenty uploads at once with MAX_TOKEN_WORKERS=3: never more than three
// token worker processes alive at once (sampled from /proc all along), the
// runs beyond them wait their turn with "waiting for a worker (N ahead)" on
// their status, and all twenty complete with every row in the ZIP once.
func TestTwentyRunsCapThree(t *testing.T) {
	t.Parallel()
	c := newCluster(t, map[string]string{
		"MAX_TOKEN_WORKERS":     "3",
		"SLEEPWORKER_ROW_SLEEP": "10ms",
	})
	c.env["LOCAL_WORKER_COMMAND"] = c.bin + " -q {queue} -c 4 --idle-timeout 1m"
	c.startReportWorker()
	s := c.sample(5 * time.Millisecond)
	const runs, rows = 20, 40
	type run struct {
		token string
		id    int64
	}
	var all []run
	for range runs {
		tok, id := c.submit(rows, "sleep")
		all = append(all, run{tok, id})
	}
	// Watch the waiting runs' status while they wait.
	waitingSeen := map[string]string{}
	deadline := time.Now().Add(4 * time.Minute)
	for {
		left := 0
		for _, r := range all {
			if c.completed(r.id) {
				continue
			}
			left++
			if st, err := c.db.StatusByToken(context.Background(), r.token); err == nil && strings.HasPrefix(st.StateReason, "waiting for a worker (") {
				waitingSeen[r.token] = st.StateReason
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d runs unfinished after 4 minutes", left, runs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.end()
	if s.max > 3 {
		t.Fatalf("%d token workers alive at once, cap 3", s.max)
	}
	if s.max < 3 {
		t.Fatalf("at most %d token workers at once: the cap of 3 was never used", s.max)
	}
	if len(waitingSeen) < runs/2 {
		t.Fatalf("only %d runs showed they waited: %v", len(waitingSeen), waitingSeen)
	}
	deep := false
	for _, r := range waitingSeen {
		deep = deep || !strings.Contains(r, "(0 ahead)")
	}
	if !deep {
		t.Fatalf("no run was told others were ahead: %v", waitingSeen)
	}
	for _, r := range all {
		c.checkZip(r.token, rows)
	}
}
