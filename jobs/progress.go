package jobs

import (
	"context"
	"sync"
	"time"
)

// progressEvery is the most often one process writes a run's done/failed
// counts to the database. The row ledger in Redis is the truth; these
// counts are for the status pages and the Rails app, and the finalizer sets
// them exactly at the end.
const progressEvery = 500 * time.Millisecond

// progress coalesces count updates per token, so a busy run writes its
// status row about twice a second instead of once per row.
type progress struct {
	mu sync.Mutex
	m  map[string]*pendingCounts
}

type pendingCounts struct {
	done, failed int
	last         time.Time
}

// countRow adds one ended row to token's counts and writes them when the
// last write is older than progressEvery.
func (p *Pipeline) countRow(ctx context.Context, token string, done, failed int) {
	now := p.d.Now()
	pr := &p.progress
	pr.mu.Lock()
	if pr.m == nil {
		pr.m = map[string]*pendingCounts{}
	}
	e := pr.m[token]
	if e == nil {
		e = &pendingCounts{}
		pr.m[token] = e
	}
	e.done += done
	e.failed += failed
	if now.Sub(e.last) < progressEvery {
		pr.mu.Unlock()
		return
	}
	d, f := e.done, e.failed
	e.done, e.failed, e.last = 0, 0, now
	for t, v := range pr.m { // forget runs idle for a while
		if now.Sub(v.last) > 10*time.Minute && v.done == 0 && v.failed == 0 {
			delete(pr.m, t)
		}
	}
	pr.mu.Unlock()
	if d > 0 {
		if err := p.d.DB.IncrementDone(ctx, token, d); err != nil {
			p.log.Warn("increment done_count (the finalizer sets the exact count)", "token", token, "err", err)
		}
	}
	if f > 0 {
		if err := p.d.DB.IncrementFailed(ctx, token, f); err != nil {
			p.log.Warn("increment failed_count (the finalizer sets the exact count)", "token", token, "err", err)
		}
	}
}
