package sidekiq

import (
	"context"
	"sync"
	"time"
)

// MaxDeferredAcks bounds the jobs of one server whose handlers returned but
// whose acknowledgement waits on a later Settle (DeferAck): past it,
// DeferAck waits for one to settle. Each holds what its job handed on (a
// row's file waiting for its group commit), so the bound is memory too.
const MaxDeferredAcks = 256

// Settle ends a job whose acknowledgement was deferred (DeferAck): nil
// acknowledges it, an error fails it as if its handler had returned the
// error (retry or dead set, Sidekiq's job_retry.rb). Only the first call
// counts.
type Settle func(err error)

// deferKey is the context key of a processor's state, for DeferAck.
type deferKey struct{}

// DeferAck lets a handler return before its job's outcome is known, and so
// free its processor for the next job: the job stays on this process's
// in-flight list (a kill gives it back to its queue, as for a running job)
// until settle is called, and is acknowledged only then. A handler calls it
// just before it returns nil, having handed its last step (a group commit)
// to something that calls settle once that step is done. If the handler
// returns an error instead, or the job was given back at a hard shutdown,
// settle does nothing.
//
// ok is false when the job cannot wait so: not run by a Server (a test's
// WorkOne), basic fetch (nothing is in flight, so a kill would lose the
// job), or ctx ended while MaxDeferredAcks jobs were waiting. The handler
// then finishes its step itself before returning.
func DeferAck(ctx context.Context) (settle Settle, ok bool) {
	p, _ := ctx.Value(deferKey{}).(*processorState)
	if p == nil || p.srv == nil || !p.srv.fetcher.Reliable() || p.pending != nil {
		return nil, false
	}
	s := p.srv
	select {
	case s.deferred.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, false
	}
	s.deferred.wg.Add(1)
	d := &deferredAck{s: s}
	p.pending = d
	return d.settle, true
}

// deferredAcks are a server's jobs waiting on a Settle.
type deferredAcks struct {
	slots chan struct{} // one per waiting job, cap MaxDeferredAcks
	wg    sync.WaitGroup
}

func (da *deferredAcks) count() int { return len(da.slots) }

// wait waits up to timeout for the waiting jobs to settle; those that do
// not stay in flight and are given back with the rest (release).
func (da *deferredAcks) wait(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { da.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// deferredAck is one job waiting on its Settle. The settle may come
// before the processor has seen its handler return: whichever of the two
// comes second settles the job.
type deferredAck struct {
	s *Server

	mu       sync.Mutex
	returned bool // the handler returned nil: the job is the deferral's
	settled  bool // settle was called, with err
	err      error
	dropped  bool // the handler failed, or the job was given back: settle is moot
	finished bool

	// What the processor knew when its handler returned.
	ctx   context.Context
	u     *UnitOfWork
	job   *Job
	class string
	took  time.Duration
	ran   bool
	end   time.Time
}

func (d *deferredAck) settle(err error) {
	d.mu.Lock()
	if d.settled || d.dropped {
		d.mu.Unlock()
		return
	}
	d.settled, d.err = true, err
	ready := d.returned
	d.mu.Unlock()
	if ready {
		d.finish()
	}
}

// handlerReturned hands the job to the deferral once its handler returned
// nil; it settles now if settle came first.
func (d *deferredAck) handlerReturned(ctx context.Context, u *UnitOfWork, job *Job, class string, took time.Duration, ran bool, end time.Time) {
	d.mu.Lock()
	d.ctx, d.u, d.job, d.class, d.took, d.ran, d.end = ctx, u, job, class, took, ran, end
	d.returned = true
	ready := d.settled
	d.mu.Unlock()
	if ready {
		d.finish()
	}
}

// drop gives up the deferral: the processor settles the job (its handler
// failed) or has given it back (hard shutdown).
func (d *deferredAck) drop() {
	d.mu.Lock()
	d.dropped = true
	d.mu.Unlock()
	d.release()
}

func (d *deferredAck) release() {
	<-d.s.deferred.slots
	d.s.deferred.wg.Done()
}

// finish settles the job as the processor would have, had its handler
// returned err.
func (d *deferredAck) finish() {
	d.mu.Lock()
	if d.finished {
		d.mu.Unlock()
		return
	}
	d.finished = true
	d.mu.Unlock()
	defer d.release()
	err, srv := d.err, d.s
	if d.ran {
		srv.metrics.record(d.class, d.end, d.took, err != nil)
	}
	if err == nil {
		srv.fetcher.ack(d.u)
		srv.jobLog.done(d.job, d.class, d.u.Queue, d.took)
		return
	}
	srv.failed.Add(1)
	f := srv.judge(d.u, d.job, err, nil, d.end)
	srv.settleFailure(d.ctx, d.u, f, err, d.end)
	srv.jobLog.fail(d.job, d.class, d.u.Queue, d.took, err, f.note)
}
