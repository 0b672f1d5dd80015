package sidekiq

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// manager owns the processors, as Sidekiq's manager.rb does: one loop
// fetches a job for every free processor in one round trip and hands the
// jobs out; each processor runs its job, settles it and reports itself
// free. With prefetch it also fetches jobs ahead (a fixed number, or
// adaptive: see depthTuner), so the next jobs are in memory when
// processors free up instead of one round trip away. Once quiet it stops
// fetching and gives back at once what no processor has started.
type manager struct {
	fetch       *fetcher
	concurrency int
	prefetch    prefetchPlan                                       // jobs fetched ahead of free processors
	run         func(ctx context.Context, proc int, u *UnitOfWork) // one job, settled, by processor proc
	quiet       <-chan struct{}
	log         *slog.Logger

	hand     handoff
	finished atomic.Int64 // jobs run, for the adaptive prefetch depth
	wg       sync.WaitGroup
}

// start runs the processors and the fetch loop; job contexts derive from
// jobCtx. wait returns once all of them have returned.
func (m *manager) start(jobCtx context.Context) {
	slots := m.concurrency + m.prefetch.most
	m.hand.ready = make(chan struct{}, slots) // never full: one token per job handed over
	free := make(chan struct{}, slots)        // a slot is a processor or a prefetched job
	for range m.concurrency + m.prefetch.depth {
		free <- struct{}{}
	}
	for i := range m.concurrency {
		m.wg.Go(func() {
			// Each job's context is a child of its processor's: a child of
			// jobCtx itself would make every processor take jobCtx's lock
			// twice per job.
			procCtx, cancel := context.WithCancel(jobCtx)
			defer cancel()
			for {
				u, ok := m.hand.take(m.quiet)
				if !ok {
					return
				}
				m.run(procCtx, i, u)
				m.finished.Add(1)
				free <- struct{}{}
			}
		})
	}
	m.wg.Go(func() {
		// Once quiet, finished jobs are acknowledged as they end, not
		// with a next fetch that never comes.
		defer m.fetch.acks.setWaiting(true)
		m.loop(jobCtx, free, slots)
	})
	m.wg.Go(func() {
		<-m.quiet
		m.giveBack(jobCtx, m.hand.close())
	})
}

func (m *manager) wait() { m.wg.Wait() }

// prefetched is how many fetched jobs wait for a processor.
func (m *manager) prefetched() int { return m.hand.len() }

func (m *manager) loop(jobCtx context.Context, free chan struct{}, slots int) {
	backoff := newBackoff()
	depth := newDepthTuner(m.prefetch, time.Now())
	for {
		select {
		case <-free:
		case <-m.quiet:
			return
		}
		// select picks at random when both are ready: without this a
		// quiet manager could go on fetching (and block) for rounds.
		if m.isQuiet() {
			return
		}
		for range depth.tune(time.Now(), m.finished.Load()) {
			free <- struct{}{} // never blocks: at most slots tokens exist
		}
		n := depth.pay(1 + m.collect(free, slots))
		if n == 0 {
			continue // the tokens were owed: the depth shrank
		}
		us, err := m.fetch.fetch(jobCtx, n)
		for range n - len(us) {
			free <- struct{}{}
		}
		if err != nil {
			if !m.isQuiet() {
				backoff.fail(m.log, "fetch", err)
				backoff.sleep(m.quiet)
			}
			continue
		}
		backoff.ok(m.log)
		if late := m.hand.put(us); len(late) > 0 {
			// Fetched after quiet: give them back untouched, they run next.
			m.giveBack(jobCtx, late)
			return
		}
	}
}

// giveBack returns jobs no processor started to their queues, in order.
func (m *manager) giveBack(jobCtx context.Context, us []*UnitOfWork) {
	if len(us) == 0 {
		return
	}
	if err := m.fetch.requeueMany(context.WithoutCancel(jobCtx), us); err != nil {
		m.log.Error("give back jobs not started after quiet", "jobs", len(us), "err", err)
	}
}

// handoff passes fetched jobs to the processors in fetch order. Once
// closed (quiet) no processor takes another, and the jobs left are
// returned to be given back.
type handoff struct {
	mu     sync.Mutex
	jobs   []*UnitOfWork
	closed bool
	ready  chan struct{} // one token per job put
}

// put hands jobs over; once closed it returns them instead.
func (h *handoff) put(us []*UnitOfWork) (late []*UnitOfWork) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return us
	}
	h.jobs = append(h.jobs, us...)
	h.mu.Unlock()
	for range us {
		h.ready <- struct{}{}
	}
	return nil
}

// take waits for the next job; false once quiet or closed. Quiet is
// checked under the lock, so after quiet no job is started that close
// would not have returned.
func (h *handoff) take(quiet <-chan struct{}) (*UnitOfWork, bool) {
	select {
	case <-h.ready:
	case <-quiet:
		return nil, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || isClosed(quiet) {
		return nil, false
	}
	u := h.jobs[0]
	h.jobs[0] = nil
	h.jobs = h.jobs[1:]
	return u, true
}

// close stops the handoff and returns the jobs no processor took.
func (h *handoff) close() []*UnitOfWork {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	left := h.jobs
	h.jobs = nil
	return left
}

func (h *handoff) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.jobs)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// collect takes the free processors beyond the first: it yields to let
// processors that are about to finish do so, as long as each yield frees
// more (a few times at most), so one round trip serves them all.
func (m *manager) collect(free <-chan struct{}, slots int) int {
	n := 0
	for range 4 {
		runtime.Gosched()
		got := 0
	drain:
		for n+got < slots-1 {
			select {
			case <-free:
				got++
			default:
				break drain
			}
		}
		n += got
		if got == 0 || n == slots-1 {
			break
		}
	}
	return n
}

func (m *manager) isQuiet() bool { return isClosed(m.quiet) }
