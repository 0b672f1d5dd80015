package sidekiq

import (
	"context"
	"errors"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

// processLoop is one processor (a Sidekiq thread): fetch, run, settle,
// until the server is quiet.
func (s *Server) processLoop(jobCtx context.Context, n int) {
	tid := strconv.FormatInt(int64(n)+36*36, 36) // short, unique, like Sidekiq's base-36 tids
	backoff := newBackoff()
	for !s.quiet.Load() {
		u, err := s.fetcher.Fetch(jobCtx)
		if err != nil {
			if !s.quiet.Load() {
				backoff.fail(s.log, "fetch", err)
				backoff.sleep(s.quietCh)
			}
			continue
		}
		backoff.ok(s.log)
		if u == nil {
			continue
		}
		if s.quiet.Load() {
			// Popped after quiet: give it back untouched, it runs next.
			if err := s.fetcher.Requeue(context.WithoutCancel(jobCtx), u); err != nil {
				s.log.Error("requeue after quiet", "queue", u.Queue, "err", err)
			}
			return
		}
		s.process(jobCtx, tid, u)
	}
}

// startDispatch runs the reliable-fetch loop: one dispatcher fetches as
// many jobs as there are idle processors in one round trip and hands them
// to the processors; it stops when the server is quiet, giving back any
// job it holds.
func (s *Server) startDispatch(jobCtx context.Context, f *reliableFetch, procs *sync.WaitGroup) {
	work := make(chan *UnitOfWork)
	idle := make(chan struct{}, s.opts.Concurrency)
	for range s.opts.Concurrency {
		idle <- struct{}{}
	}
	for i := range s.opts.Concurrency {
		tid := strconv.FormatInt(int64(i)+36*36, 36)
		procs.Go(func() {
			for u := range work {
				s.process(jobCtx, tid, u)
				idle <- struct{}{}
			}
		})
	}
	procs.Go(func() {
		defer close(work)
		backoff := newBackoff()
		giveBack := func(us []*UnitOfWork) {
			for _, u := range us {
				if err := f.Requeue(context.WithoutCancel(jobCtx), u); err != nil {
					s.log.Error("requeue after quiet", "queue", u.Queue, "err", err)
				}
			}
		}
		for {
			select {
			case <-idle:
			case <-s.quietCh:
				return
			}
			// select picks at random when both are ready: without this a
			// quiet dispatcher could go on fetching (and block) for rounds,
			// outliving Run.
			if s.quiet.Load() {
				return
			}
			n := 1
		more:
			for n < s.opts.Concurrency {
				select {
				case <-idle:
					n++
				default:
					break more
				}
			}
			us, err := f.FetchMany(jobCtx, n)
			for range n - len(us) {
				idle <- struct{}{}
			}
			if err != nil {
				if !s.quiet.Load() {
					backoff.fail(s.log, "fetch", err)
					backoff.sleep(s.quietCh)
				}
				continue
			}
			backoff.ok(s.log)
			for i, u := range us {
				if s.quiet.Load() {
					giveBack(us[i:])
					return
				}
				work <- u
			}
		}
	})
}

// process runs one fetched job and settles it: ack on success, retry or
// dead set on failure. Bad payloads go to the dead set as they were read.
func (s *Server) process(jobCtx context.Context, tid string, u *UnitOfWork) {
	start := s.opts.Now()
	s.lastWork.Store(start.UnixNano())
	job, perr := ParseJob(u.Raw)
	ctx, cancel := context.WithCancel(jobCtx)
	r := &running{uow: u, job: job, runAt: start, cancel: cancel}
	s.mu.Lock()
	s.inflight[tid] = r
	s.mu.Unlock()

	var (
		err   error
		trace []string
		ran   bool // the handler was found (Ruby: past const_get, inside the metrics middleware)
	)
	if perr == nil {
		trace, ran, err = s.execute(ctx, job)
	}
	cancel()

	s.mu.Lock()
	delete(s.inflight, tid)
	requeued := r.requeued
	s.mu.Unlock()
	end := s.opts.Now()
	s.lastWork.Store(end.UnixNano())
	if requeued {
		return // hard shutdown gave it back; this run does not count
	}
	settle := context.WithoutCancel(jobCtx)
	if perr != nil {
		// Ruby's processor.rb moves unparsable JSON to the dead set before
		// any stats or metrics are counted; so does Go.
		s.log.Error("bad payload: moved to the dead set", "queue", u.Queue, "err", perr,
			"payload", truncate(string(u.Raw), 200))
		s.settleErr(settle, u, func(c redis.Conn) error {
			return rdb.KillAndAck(c, end, s.deadLimits(), u.Raw, s.ackIdentity(), u.Queue, u.Raw)
		})
		return
	}
	s.processed.Add(1)
	if ran {
		s.metrics.record(job.DisplayClass(), end, end.Sub(start), err != nil)
	}
	elapsed := strconv.FormatFloat(end.Sub(start).Seconds(), 'f', 3, 64)
	if err == nil {
		if aerr := s.fetcher.Ack(settle, u); aerr != nil {
			s.log.Error("ack", "queue", u.Queue, "jid", job.JID, "err", aerr)
		}
		s.jobLog.done(job, u.Queue, elapsed, end.Sub(start))
		return
	}
	s.failed.Add(1)
	outcome := s.retryOrKill(settle, u, job, err, trace, end)
	s.jobLog.fail(job, u.Queue, elapsed, end.Sub(start), err, outcome)
	var p *PanicError
	if errors.As(err, &p) {
		s.log.Error("handler panicked", "jid", job.JID, "class", job.DisplayClass(), "stack", string(p.Stack))
	}
}

// execute dispatches a job to its handler through the server middleware.
// A panic becomes a *PanicError; the processor lives on. ran is false when
// no handler is registered for the class. trace is where a failure
// surfaced, for error_backtrace.
func (s *Server) execute(ctx context.Context, job *Job) (trace []string, ran bool, err error) {
	h, ok := s.reg.Lookup(job.HandlerClass())
	if !ok {
		return nil, false, unknownClassError{class: job.HandlerClass()}
	}
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack(), pcs: panicCallers()}
		}
		if err != nil && trace == nil {
			trace = handlerTrace(h, 2)
		}
	}()
	final := func(ctx context.Context) error {
		err := h(ctx, job)
		if err != nil {
			trace = handlerTrace(h, 2)
		}
		return err
	}
	err = chainServer(s.opts.ServerMiddleware, final, job)(ctx)
	return trace, true, err
}

// settleErr writes a failed job's fate (retry set, dead set, ack) and
// retries until Redis answers: a settle dropped during an outage would
// leave the job parked on the in-flight list. It gives up only once Run has
// returned; the job then stays in flight and comes back when recovered.
func (s *Server) settleErr(ctx context.Context, u *UnitOfWork, f func(redis.Conn) error) {
	b := newBackoff()
	for {
		err := s.do(ctx, f)
		if err == nil {
			b.ok(s.log)
			if rf, ok := s.fetcher.(*reliableFetch); ok {
				rf.release(u.Queue, u.Raw)
			}
			return
		}
		b.fail(s.log, "settle failed job", err)
		select {
		case <-s.gone:
			s.log.Error("settle failed job: giving up at exit; the job stays in flight", "queue", u.Queue, "err", err)
			return
		case <-time.After(b.delay):
		}
	}
}

// ackIdentity is the identity whose in-flight list holds fetched jobs, or ""
// with basic fetch.
func (s *Server) ackIdentity() string {
	if s.fetcher.Reliable() {
		return s.identity
	}
	return ""
}

func (s *Server) deadLimits() rdb.DeadLimits {
	return rdb.DeadLimits{MaxJobs: s.opts.DeadMaxJobs, Timeout: s.opts.DeadTimeout}
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
