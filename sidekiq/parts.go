package sidekiq

import (
	"context"
)

// part is one of the server's background parts: run loops until ctx is
// done; each part also has a runOnce that does one pass, which tests call
// directly (River's maintenance services).
type part interface {
	run(ctx context.Context)
}

// serverParts are the background parts of one Server run. Run starts them
// after the first heartbeat and stops them once the processors have
// finished or given their jobs back.
type serverParts struct {
	// heartbeat is the server's own; nil for a capsule, which its
	// Process's heartbeat keeps alive.
	heartbeat  *heartbeat
	flushStats func(context.Context)
	metrics    *metricsFlusher
	// recoverer gives back dead processes' in-flight jobs; it belongs to
	// reliable fetch (nil with basic fetch: nothing is in flight).
	recoverer *recoverer
	poller    *poller
}

func newServerParts(s *Server) *serverParts {
	p := &serverParts{
		flushStats: s.flushStats,
		heartbeat: newHeartbeat(heartbeatParams{
			pool:        s.pool,
			log:         s.log,
			identity:    s.identity,
			interval:    s.opts.HeartbeatInterval,
			ttl:         s.processTTL(),
			concurrency: func() int { return s.opts.Concurrency },
			legacyWork:  s.opts.Dialect == Dialect6,
			now:         s.opts.Now,
			info:        s.info,
			running:     s.workSnapshot,
			quiet:       s.quiet.Load,
			rss:         s.processRSS,
			flushStats:  s.flushStats,
			onQuiet:     s.Quiet,
			onStop:      s.Stop,
			onDump:      s.DumpWork,
			onBeat:      s.opts.OnBeat,
		}),
		metrics: newMetricsFlusher(metricsFlusherParams{
			pool:     s.pool,
			dialect:  s.opts.Dialect,
			interval: s.opts.HeartbeatInterval,
			buf:      &s.metrics,
			log:      s.log,
		}),
		poller: newPoller(pollerParams{
			pool:    s.pool,
			log:     s.log,
			average: s.opts.PollAverage,
			dialect: s.opts.Dialect,
			now:     s.opts.Now,
			dead:    s.deadLimits(),
			quiet:   s.quiet.Load,
		}),
	}
	if s.opts.Process != nil {
		p.heartbeat = nil
	} else if s.fetcher.Reliable() {
		p.heartbeat.inflightQueues = s.order.unique
	}
	if rec := s.fetcher.recoverer(min(RecoverInterval, s.opts.HeartbeatInterval*3)); rec != nil {
		if s.opts.PrivateRedis {
			rec.deadHere = goneFromHost(s.opts.Hostname)
		}
		p.recoverer = rec
	}
	return p
}

// order lists the parts in start order; stop runs it backwards, each part
// gone before the next is stopped.
//   - heartbeat first and last (a capsule's is its Process's, from join
//     to leave, around all of these): while it beats the process is alive to the
//     Web UI and to other processes' recoverers, which would otherwise take
//     its in-flight jobs while the processors finish them.
//   - metrics flusher: counts what the processors record until they stop.
//   - recoverer: its moves are those of a live process.
//   - poller last: it feeds the queues, so it starts once the process is
//     up and is the first to stop (senders before receivers).
func (p *serverParts) order() []part {
	var ps []part
	if p.heartbeat != nil {
		ps = append(ps, p.heartbeat)
	}
	ps = append(ps, p.metrics)
	if p.recoverer != nil {
		ps = append(ps, p.recoverer)
	}
	return append(ps, p.poller)
}

// run starts the parts in order and, once ctx is done, stops them in
// reverse order.
func (p *serverParts) run(ctx context.Context) {
	var g partGroup
	g.start(context.WithoutCancel(ctx), p.order())
	<-ctx.Done()
	g.stop()
}

// flush writes the stats and metrics of the last jobs, once the processors
// and the parts have stopped (nothing counts after this).
func (p *serverParts) flush(ctx context.Context) {
	p.flushStats(ctx)
	// Best effort, as in the flusher's loop, which logs the same way.
	if err := p.metrics.runOnce(ctx); err != nil && p.metrics.log != nil {
		p.metrics.log.Warn("write job metrics at stop", "err", err)
	}
}

// partGroup runs parts and stops them in reverse start order, each one
// returned before the next is told to stop.
type partGroup struct {
	running []runningPart // in start order
}

type runningPart struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (g *partGroup) start(ctx context.Context, ps []part) {
	for _, x := range ps {
		partCtx, cancel := context.WithCancel(ctx)
		r := runningPart{cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(r.done)
			x.run(partCtx)
		}()
		g.running = append(g.running, r)
	}
}

func (g *partGroup) stop() {
	for i := len(g.running) - 1; i >= 0; i-- {
		g.running[i].cancel()
		<-g.running[i].done
	}
	g.running = nil
}
