package sidekiq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

// Server runs jobs from Redis the way a Sidekiq process does (Sidekiq's
// Launcher: manager, processors, scheduled poller and heartbeat), and is
// seen as one by Ruby's API and Web UI.
type Server struct {
	pool     *redis.Pool
	reg      *Registry
	opts     Options
	log      *slog.Logger
	identity string // the process entry's, or a capsule's own (in-flight owner)
	// entry is the Process entry this server beats in as a capsule, from
	// its join (nil for a server with an entry of its own).
	entry   atomic.Pointer[processEntry]
	started time.Time
	fetcher *fetcher
	client  *Client
	order   *queueOrder

	quiet     atomic.Bool
	quietCh   chan struct{}
	quietOnce sync.Once
	stopCh    chan struct{}
	stopOnce  sync.Once
	gone      chan struct{} // closed when Run returns

	metrics   execMetrics
	jobLog    *jobLog
	processed atomic.Int64 // since the last flush
	failed    atomic.Int64
	lastWork  atomic.Int64 // unix nanos of the last fetched or finished job

	procs []*processorState // one per processor, by index
	// deferred are the jobs whose handlers returned and whose
	// acknowledgement waits on a Settle (deferack.go).
	deferred deferredAcks
}

// processorState is one processor's: its tid, its middleware invoker and
// the job it runs now, which the heartbeat, TTIN and the hard shutdown
// read. Each processor writes only its own, so no lock is shared by all.
type processorState struct {
	tid string
	inv *invoker
	// cur is the running job, nil when idle. The processor and the hard
	// shutdown each take it with Swap: whoever gets it decides the job's
	// fate (settled, or given back to its queue), never both.
	cur atomic.Pointer[running]

	// srv, jobCtx and valCtx serve DeferAck: valCtx is jobCtx carrying
	// this state, built once rather than once a job. pending is the
	// deferral the running handler asked for (only the processor's
	// goroutine touches it).
	srv     *Server
	jobCtx  context.Context
	valCtx  context.Context
	pending *deferredAck
}

// handlerCtx is jobCtx carrying p, for DeferAck.
func (p *processorState) handlerCtx(jobCtx context.Context) context.Context {
	if p.jobCtx != jobCtx {
		p.jobCtx, p.valCtx = jobCtx, context.WithValue(jobCtx, deferKey{}, p)
	}
	return p.valCtx
}

// running is one job being processed.
type running struct {
	uow   *UnitOfWork
	job   *Job // nil when the payload could not be parsed
	runAt time.Time
}

// running lists the processors' running jobs, by tid.
func (s *Server) runningJobs() map[string]*running {
	out := make(map[string]*running, len(s.procs))
	for _, p := range s.procs {
		if r := p.cur.Load(); r != nil {
			out[p.tid] = r
		}
	}
	return out
}

// NewServer builds a server that runs reg's handlers on pool.
func NewServer(pool *redis.Pool, reg *Registry, opts Options) (*Server, error) {
	if opts.Process != nil && opts.Hostname == "" {
		opts.Hostname = opts.Process.opts.Hostname
	}
	if err := opts.withDefaults(); err != nil {
		return nil, err
	}
	var tidBase int64
	if opts.Process != nil {
		tidBase = opts.Process.tidBase(opts.Concurrency) // unique in the entry's one work hash
		if opts.Capsule == "" {
			opts.Capsule = "default"
		}
	}
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	s := &Server{
		pool:     pool,
		reg:      reg,
		opts:     opts,
		identity: fmt.Sprintf("%s:%d:%s", opts.Hostname, os.Getpid(), hex.EncodeToString(nonce[:])),
		started:  opts.Now(),
		order:    newQueueOrder(opts.Queues),
		quietCh:  make(chan struct{}),
		stopCh:   make(chan struct{}),
		gone:     make(chan struct{}),
	}
	s.procs = make([]*processorState, opts.Concurrency)
	for i := range s.procs {
		// Short and unique, like Sidekiq's base-36 tids.
		s.procs[i] = &processorState{tid: strconv.FormatInt(tidBase+int64(i)+36*36, 36), inv: newInvoker(opts.ServerMiddleware), srv: s}
	}
	s.deferred.slots = make(chan struct{}, MaxDeferredAcks)
	s.log = opts.Logger.With("identity", s.identity)
	s.jobLog = &jobLog{log: s.log, quiet: reg.Quiet, now: opts.Now}
	s.client = NewClient(pool, ClientOptions{Dialect: opts.Dialect, Middleware: opts.ClientMiddleware, Now: opts.Now})
	inflightOwner := s.identity
	if opts.BasicFetch {
		inflightOwner = "" // Sidekiq's BasicFetch: nothing in flight in Redis
	}
	s.fetcher = newFetcher(pool, inflightOwner, s.order, s.log,
		rdb.DeadLimits{MaxJobs: opts.DeadMaxJobs, Timeout: opts.DeadTimeout}, s.gone)
	return s, nil
}

// Identity is the process identity in the "processes" set:
// "hostname:pid:12-hex-nonce", as Sidekiq writes it. For a capsule of a
// Process it is the entry's once the server runs.
func (s *Server) Identity() string {
	if e := s.entry.Load(); e != nil {
		return e.identity
	}
	return s.identity
}

// Client is a client with the server's dialect and client middleware.
func (s *Server) Client() *Client { return s.client }

// Quiet stops fetching new jobs; running jobs finish (Sidekiq's TSTP).
func (s *Server) Quiet() {
	s.quietOnce.Do(func() {
		s.quiet.Store(true)
		close(s.quietCh)
		s.log.Info("quieting: no new jobs will be fetched")
	})
}

// Stop asks Run to shut down gracefully (Sidekiq's TERM).
func (s *Server) Stop() { s.stopOnce.Do(func() { close(s.stopCh) }) }

// Stopping is closed once a stop has been requested.
func (s *Server) Stopping() <-chan struct{} { return s.stopCh }

// Run starts the processors, the scheduled poller, the heartbeat and the
// orphan recoverer, and blocks until ctx is cancelled, Stop is called, a
// TERM arrives from the Web UI, or the idle timeout passes. It then quiets,
// waits up to Options.Timeout for running jobs, gives back the ones still
// running, and clears the heartbeat.
func (s *Server) Run(ctx context.Context) error {
	defer close(s.gone)
	// Known to this process's other servers as alive from before its first
	// beat until its heartbeat is cleared (goneFromHost).
	proc := s.opts.Process
	runningHere.add(s.identity, proc == nil)
	defer runningHere.remove(s.identity)
	s.lastWork.Store(s.opts.Now().UnixNano())
	parts := newServerParts(s) // heartbeat, metrics flusher, recoverer, poller
	// The heartbeat comes first: another process's recoverer that saw our
	// in-flight registration without it would take us for dead and drop
	// the registration before our first fetch. A capsule's is its
	// Process's, which beats at once as it joins.
	if proc != nil {
		if err := proc.join(ctx, s); err != nil {
			return fmt.Errorf("start %s: %w", s.identity, err)
		}
	} else if err := parts.heartbeat.runOnce(ctx); err != nil {
		return fmt.Errorf("start %s: first heartbeat: %w", s.identity, err)
	}
	if err := s.fetcher.register(ctx); err != nil {
		err = fmt.Errorf("start %s: %w", s.identity, err)
		if proc != nil {
			err = errors.Join(err, proc.leave(context.WithoutCancel(ctx), s, true)) // nothing fetched yet
		}
		return err
	}
	s.log.Info("started", "queues", s.order.unique, "mode", s.order.mode,
		"concurrency", s.opts.Concurrency, "reliable_fetch", s.fetcher.Reliable(), "dialect", int(s.opts.Dialect))

	// Job contexts outlive ctx: they are cancelled only at the hard
	// shutdown deadline.
	jobCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	bgCtx, cancelBG := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup

	bg.Go(func() { parts.run(bgCtx) }) // when bgCtx ends, stops them in the order parts.go gives
	s.fetcher.startAcker()
	defer s.fetcher.stopAcker()
	mgr := &manager{fetch: s.fetcher, concurrency: s.opts.Concurrency, prefetch: s.opts.prefetch,
		run:   func(ctx context.Context, proc int, u *UnitOfWork) { s.process(ctx, s.procs[proc], u) },
		quiet: s.quietCh, log: s.log}
	mgr.start(jobCtx)
	idle := s.idleWatch(bgCtx, mgr.prefetched)

	select {
	case <-ctx.Done():
	case <-s.stopCh:
	case <-idle:
		s.log.Info("idle timeout: stopping", "idle_timeout", s.opts.IdleTimeout)
	}
	s.Stop()
	s.Quiet()
	stopAt := time.Now()
	s.shutdown(mgr, cancelJobs)
	// Jobs waiting on a Settle (a group commit) are given what is left of
	// the grace period, and a second at least (a commit takes
	// milliseconds); those still waiting then stay in flight and go back
	// to their queues with release below (run again, not lost).
	if !s.deferred.wait(max(s.opts.Timeout-time.Since(stopAt), time.Second)) {
		s.log.Warn("jobs still waiting for their settle at shutdown: given back to their queues", "jobs", s.deferred.count())
	}
	cancelBG()
	bg.Wait()

	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	parts.flush(cleanup) // the stats and metrics of the last jobs
	s.jobLog.flush()
	err := s.fetcher.release(cleanup)
	switch {
	case proc != nil:
		if lerr := proc.leave(cleanup, s, err == nil); err == nil {
			err = lerr
		}
	case err == nil:
		err = s.do(cleanup, func(c redis.Conn) error { return rdb.ClearProcess(c, s.identity) })
	}
	if err != nil {
		return fmt.Errorf("shutdown %s: %w", s.identity, err)
	}
	s.log.Info("stopped")
	return nil
}

// shutdown waits for processors to finish within the timeout, then gives
// back what still runs and cancels it, as Sidekiq's manager hard_shutdown:
// it is worse to lose a job than to run it twice.
func (s *Server) shutdown(mgr *manager, cancelJobs context.CancelFunc) {
	done := make(chan struct{})
	go func() { mgr.wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(s.opts.Timeout):
	}
	var left []*running
	for _, p := range s.procs {
		if r := p.cur.Swap(nil); r != nil { // the processor will not settle it
			left = append(left, r)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, r := range left {
		if err := s.fetcher.requeue(ctx, r.uow); err != nil {
			s.log.Error("requeue at shutdown", "queue", r.uow.Queue, "err", err)
			continue
		}
		s.log.Warn("job still running at shutdown deadline: pushed back to its queue",
			"queue", r.uow.Queue, "jid", jidOf(r))
	}
	cancelJobs()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		s.log.Warn("processors did not return within 3s of cancellation")
	}
}

func (s *Server) deadLimits() rdb.DeadLimits { return s.fetcher.dead }

func jidOf(r *running) string {
	if r.job != nil {
		return r.job.JID
	}
	return ""
}

// do runs f on a pooled connection.
func (s *Server) do(ctx context.Context, f func(redis.Conn) error) error {
	c, err := s.pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return f(c)
}

// idleWatch closes the returned channel when the server has been idle for
// Options.IdleTimeout: nothing running, nothing fetched, its queues empty
// and none of its jobs waiting in the schedule or retry sets.
func (s *Server) idleWatch(ctx context.Context, prefetched func() int) <-chan struct{} {
	ch := make(chan struct{})
	if s.opts.IdleTimeout <= 0 {
		return ch
	}
	go func() {
		t := time.NewTicker(min(s.opts.IdleTimeout/4+time.Millisecond, 5*time.Second))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if s.busy() > 0 || s.deferred.count() > 0 || prefetched() > 0 || s.opts.Now().Sub(time.Unix(0, s.lastWork.Load())) < s.opts.IdleTimeout {
				continue
			}
			pending, err := s.pendingFor(ctx, s.order.unique)
			if err != nil || pending > 0 {
				continue
			}
			close(ch)
			return
		}
	}()
	return ch
}

// pendingFor counts jobs for queues waiting in their lists and in the
// schedule and retry sets.
func (s *Server) pendingFor(ctx context.Context, queues []string) (int, error) {
	n := 0
	err := s.do(ctx, func(c redis.Conn) error {
		for _, q := range queues {
			l, err := rdb.QueueLen(c, q)
			if err != nil {
				return err
			}
			n += l
			for _, set := range []string{rdb.KeySchedule, rdb.KeyRetry} {
				k, err := countInSet(c, set, q)
				if err != nil {
					return err
				}
				n += k
			}
		}
		return nil
	})
	return n, err
}

func (s *Server) busy() int {
	n := 0
	for _, p := range s.procs {
		if p.cur.Load() != nil {
			n++
		}
	}
	return n
}

// errorClass names an error for Sidekiq's error_class field.
func errorClass(err error) string {
	var ec interface{ ErrorClass() string }
	switch {
	case errors.As(err, &ec):
		return ec.ErrorClass()
	case errors.Is(err, ErrUnknownClass):
		return "NameError"
	case errors.Is(err, ErrBadArgs), errors.Is(err, ErrBadPayload):
		return "ArgumentError"
	case errors.Is(err, context.DeadlineExceeded):
		return "Timeout::Error"
	}
	var p *PanicError
	if errors.As(err, &p) {
		return "Pallarel::Panic"
	}
	return "Pallarel::JobError"
}

// unknownClassError is Ruby's NameError from Object.const_get: the job
// fails and is retried like any other (processor.rb dispatch, inside the
// global retrier), so a Go worker deployed before a handler loses nothing.
type unknownClassError struct{ class string }

func (e unknownClassError) Error() string        { return "uninitialized constant " + e.class }
func (e unknownClassError) ErrorClass() string   { return "NameError" }
func (e unknownClassError) Is(target error) bool { return target == ErrUnknownClass }

// PanicError is a handler panic turned into a job failure.
type PanicError struct {
	Value any
	Stack []byte
	pcs   []uintptr // for error_backtrace
}

func (p *PanicError) Error() string { return fmt.Sprintf("panic: %v", p.Value) }

// processRSS is what this server's heartbeat reports as memory: the
// process's RSS from one of its servers only (localServers.reportsMemory),
// 0 from the others, so several servers of one process count it once.
func (s *Server) processRSS() int64 {
	if !runningHere.reportsMemory(s.identity) {
		return 0
	}
	return rssKB()
}

func rssKB() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.Sys / 1024)
	}
	var size, res int64
	fmt.Sscan(string(data), &size, &res)
	return res * int64(os.Getpagesize()) / 1024
}
