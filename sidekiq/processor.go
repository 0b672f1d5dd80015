package sidekiq

import (
	"context"
	"errors"
	"runtime/debug"
	"time"
)

// process runs one fetched job and settles it: ack on success, retry or
// dead set on failure. Bad payloads go to the dead set as they were read.
func (s *Server) process(jobCtx context.Context, p *processorState, u *UnitOfWork) {
	start := s.opts.Now()
	s.lastWork.Store(start.UnixNano())
	job, perr := ParseJob(u.Raw)
	ctx, cancel := context.WithCancel(p.handlerCtx(jobCtx))
	p.cur.Store(&running{uow: u, job: job, runAt: start})

	var (
		err   error
		trace []string
		ran   bool // the handler was found (Ruby: past const_get, inside the metrics middleware)
	)
	if perr == nil {
		trace, ran, err = s.execute(ctx, p.inv, job)
	}
	cancel()
	deferred := p.pending
	p.pending = nil

	taken := p.cur.Swap(nil) == nil
	end := s.opts.Now()
	s.lastWork.Store(end.UnixNano())
	if deferred != nil && (taken || err != nil) {
		deferred.drop() // settled here, or given back: the Settle is moot
		deferred = nil
	}
	if taken {
		return // hard shutdown gave it back; this run does not count
	}
	// Settling outlives a stop: it must not be cancelled with the jobs.
	settle := func() context.Context { return context.WithoutCancel(jobCtx) }
	if perr != nil {
		// Ruby's processor.rb moves unparsable JSON to the dead set before
		// any stats or metrics are counted; so does Go.
		s.log.Error("bad payload: moved to the dead set", "queue", u.Queue, "err", perr,
			"payload", truncate(string(u.Raw), 200))
		s.fetcher.kill(settle(), u, end, u.Raw)
		return
	}
	s.processed.Add(1)
	took := end.Sub(start)
	class := job.DisplayClass()
	if deferred != nil {
		// Acknowledged (or failed) when its Settle comes (deferack.go).
		deferred.handlerReturned(settle(), u, job, class, took, ran, end)
		return
	}
	if ran {
		s.metrics.record(class, end, took, err != nil)
	}
	if err == nil {
		s.fetcher.ack(u)
		s.jobLog.done(job, class, u.Queue, took)
		return
	}
	s.failed.Add(1)
	f := s.judge(u, job, err, trace, end)
	s.settleFailure(settle(), u, f, err, end)
	s.jobLog.fail(job, class, u.Queue, took, err, f.note)
	var pe *PanicError
	if errors.As(err, &pe) {
		s.log.Error("handler panicked", "jid", job.JID, "class", class, "stack", string(pe.Stack))
	}
}

// execute dispatches a job to its handler through the server middleware,
// with inv, the invoker of the processor running it. A panic becomes a
// *PanicError; the processor lives on. ran is false when no handler is
// registered for the class. trace is where a failure surfaced, for
// error_backtrace.
func (s *Server) execute(ctx context.Context, inv *invoker, job *Job) (trace []string, ran bool, err error) {
	h, ok := s.reg.Lookup(job.HandlerClass())
	if !ok {
		return nil, false, unknownClassError{class: job.HandlerClass()}
	}
	inv.h, inv.job, inv.trace = h, job, nil
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack(), pcs: panicCallers()}
		}
		trace = inv.trace
		if err != nil && trace == nil {
			trace = handlerTrace(h, 2)
		}
		inv.h, inv.job, inv.trace = nil, nil, nil
	}()
	return nil, true, inv.next[0](ctx)
}

// invoker runs one processor's jobs through the server middleware (Sidekiq's
// middleware chain). Its next functions are built once per processor
// rather than once per job, which cost a closure per middleware per job.
type invoker struct {
	mw    []ServerMiddleware
	next  []func(context.Context) error // next[i] runs middleware i; next[len(mw)] the handler
	h     Handler
	job   *Job
	trace []string // where the handler's error surfaced
}

func newInvoker(mw []ServerMiddleware) *invoker {
	v := &invoker{mw: mw, next: make([]func(context.Context) error, len(mw)+1)}
	for i := range mw {
		v.next[i] = func(ctx context.Context) error { return v.mw[i](ctx, v.job, v.next[i+1]) }
	}
	v.next[len(mw)] = func(ctx context.Context) error {
		err := v.h(ctx, v.job)
		if err != nil {
			v.trace = handlerTrace(v.h, 2)
		}
		return err
	}
	return v
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// backoff spaces out retries while Redis is unreachable and logs the outage
// once, not once per attempt.
type backoff struct {
	delay   time.Duration
	failing bool
	since   time.Time
}

func newBackoff() *backoff { return &backoff{} }

func (b *backoff) fail(log interface{ Error(string, ...any) }, what string, err error) {
	if !b.failing {
		b.failing, b.since = true, time.Now()
		log.Error(what+": redis unavailable, retrying with backoff", "err", err)
	}
	b.delay = min(max(b.delay*2, 100*time.Millisecond), 5*time.Second)
}

func (b *backoff) ok(log interface{ Info(string, ...any) }) {
	if b.failing {
		log.Info("redis reachable again", "outage", time.Since(b.since).Round(time.Millisecond).String())
	}
	b.failing, b.delay = false, 0
}

func (b *backoff) sleep(stop <-chan struct{}) {
	select {
	case <-time.After(b.delay):
	case <-stop:
	}
}
