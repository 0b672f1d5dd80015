// Package counts writes a run's done and failed counts to the database as
// rows end, coalesced: a busy run writes its status row about twice a
// second instead of once a row. The row ledger in Redis is the truth;
// these counts are for the status pages and the Rails app (its finalizer
// waits on done_count), and Go's finalizer sets them exactly at the end.
//
// It imports nothing of ours: the counts go to a Writer (models.Store).
package counts

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"time"
)

// Writer is where the counts go.
type Writer interface {
	IncrementDone(ctx context.Context, token string, n int) error
	IncrementFailed(ctx context.Context, token string, n int) error
}

// Params is what a Counter needs; only Writer is required.
type Params struct {
	Writer Writer
	// Every is the most often one run's counts are written. Defaults to
	// 500ms.
	Every time.Duration
	// Logger defaults to slog.Default(); Now to time.Now.
	Logger *slog.Logger
	Now    func() time.Time
}

// writeTimeout bounds a write of held back counts, which no caller waits
// on.
const writeTimeout = 10 * time.Second

// Counter coalesces the count updates of every run in this process. Its
// timers are its own: Close stops them, waits for the writes they began,
// and writes whatever is still held back.
type Counter struct {
	p      Params
	mu     sync.Mutex
	runs   map[string]*pending
	closed bool
	wg     sync.WaitGroup // scheduled and running writes of held back counts
}

type pending struct {
	done, failed int
	last         time.Time
	timer        *time.Timer // a write of what is held back is scheduled
}

// New is a Counter writing to p.Writer.
func New(p Params) *Counter {
	p.Every = cmp.Or(p.Every, 500*time.Millisecond)
	p.Logger = cmp.Or(p.Logger, slog.Default())
	if p.Now == nil {
		p.Now = time.Now
	}
	return &Counter{p: p, runs: map[string]*pending{}}
}

// Add counts rows of token that ended, done and failed, and writes the
// run's counts when its last write is older than Every. Otherwise they are
// held back and written Every later even if no other row ends: a Ruby
// finalizer reads done_count, so it must reach the row count.
func (c *Counter) Add(ctx context.Context, token string, done, failed int) {
	now := c.p.Now()
	c.mu.Lock()
	e := c.runs[token]
	if e == nil {
		e = &pending{}
		c.runs[token] = e
	}
	e.done += done
	e.failed += failed
	if now.Sub(e.last) < c.p.Every && !c.closed {
		if e.timer == nil {
			c.wg.Add(1)
			e.timer = time.AfterFunc(c.p.Every, func() {
				defer c.wg.Done()
				c.flush(token)
			})
		}
		c.mu.Unlock()
		return
	}
	d, f := c.take(e, now)
	for t, v := range c.runs { // forget runs idle for a while
		if now.Sub(v.last) > 10*time.Minute && v.done == 0 && v.failed == 0 && v.timer == nil {
			delete(c.runs, t)
		}
	}
	c.mu.Unlock()
	c.write(ctx, token, d, f)
}

// take empties e's counts, as written at now; c.mu is held. A scheduled
// write of e, if any, finds nothing to write.
func (c *Counter) take(e *pending, now time.Time) (done, failed int) {
	done, failed = e.done, e.failed
	e.done, e.failed, e.last = 0, 0, now
	return done, failed
}

// flush writes token's held back counts now.
func (c *Counter) flush(token string) {
	c.mu.Lock()
	e := c.runs[token]
	if e == nil {
		c.mu.Unlock()
		return
	}
	e.timer = nil
	d, f := c.take(e, c.p.Now())
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	c.write(ctx, token, d, f)
}

func (c *Counter) write(ctx context.Context, token string, d, f int) {
	if d > 0 {
		if err := c.p.Writer.IncrementDone(ctx, token, d); err != nil {
			c.p.Logger.Warn("increment done_count (the finalizer sets the exact count)", "token", token, "err", err)
		}
	}
	if f > 0 {
		if err := c.p.Writer.IncrementFailed(ctx, token, f); err != nil {
			c.p.Logger.Warn("increment failed_count (the finalizer sets the exact count)", "token", token, "err", err)
		}
	}
}

// Close writes every count held back and returns once no write of the
// Counter's is running: call it after the workers whose rows it counts
// have stopped, before the database closes. A later Add writes at once.
func (c *Counter) Close() {
	c.mu.Lock()
	c.closed = true
	var tokens []string
	for t, e := range c.runs {
		if e.timer != nil && e.timer.Stop() {
			e.timer = nil
			c.wg.Done() // its write will not run: done here instead
		}
		if e.done > 0 || e.failed > 0 {
			tokens = append(tokens, t)
		}
	}
	c.mu.Unlock()
	c.wg.Wait()
	for _, t := range tokens {
		c.flush(t)
	}
}
