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
	flushing     bool // a flush of what is held back is scheduled
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
		// Held back counts are written a moment later even if no other
		// row ends: a Ruby finalizer (and Go's supervisor, for runs Ruby
		// works too) reads done_count, so it must reach the row count.
		if !e.flushing {
			e.flushing = true
			time.AfterFunc(progressEvery, func() { p.flushCounts(token) })
		}
		pr.mu.Unlock()
		return
	}
	d, f := e.done, e.failed
	e.done, e.failed, e.last, e.flushing = 0, 0, now, false
	for t, v := range pr.m { // forget runs idle for a while
		if now.Sub(v.last) > 10*time.Minute && v.done == 0 && v.failed == 0 {
			delete(pr.m, t)
		}
	}
	pr.mu.Unlock()
	p.writeCounts(ctx, token, d, f)
}

// flushCounts writes token's held back counts now.
func (p *Pipeline) flushCounts(token string) {
	pr := &p.progress
	pr.mu.Lock()
	e := pr.m[token]
	if e == nil {
		pr.mu.Unlock()
		return
	}
	d, f := e.done, e.failed
	e.done, e.failed, e.last, e.flushing = 0, 0, p.d.Now(), false
	pr.mu.Unlock()
	// Not cut short by the pipeline's stop: Close flushes the counts
	// after it cancelled the base context, and a count lost there leaves
	// the app's done_count short for ever (its finalizer waits on it).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.base), 10*time.Second)
	defer cancel()
	p.writeCounts(ctx, token, d, f)
}

func (p *Pipeline) writeCounts(ctx context.Context, token string, d, f int) {
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

// flushAllCounts writes every run's held back counts, at stop: a stopped
// worker's last rows must reach done_count too.
func (p *Pipeline) flushAllCounts() {
	pr := &p.progress
	pr.mu.Lock()
	tokens := make([]string, 0, len(pr.m))
	for t, e := range pr.m {
		if e.done > 0 || e.failed > 0 {
			tokens = append(tokens, t)
		}
	}
	pr.mu.Unlock()
	for _, t := range tokens {
		p.flushCounts(t)
	}
}
