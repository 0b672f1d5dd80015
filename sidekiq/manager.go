package sidekiq

import (
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
)

// manager owns the processors, as Sidekiq's manager.rb does: one loop
// fetches a job for every free processor in one round trip and hands the
// jobs out; each processor runs its job, settles it and reports itself
// free. It stops fetching once quiet, giving back what it holds.
type manager struct {
	fetch       *fetcher
	concurrency int
	run         func(ctx context.Context, tid string, u *UnitOfWork) // one job, settled
	quiet       <-chan struct{}
	log         *slog.Logger

	wg sync.WaitGroup
}

// start runs the processors and the fetch loop; job contexts derive from
// jobCtx. wait returns once all of them have returned.
func (m *manager) start(jobCtx context.Context) {
	work := make(chan *UnitOfWork, m.concurrency) // never full: one job per free processor
	free := make(chan struct{}, m.concurrency)
	for i := range m.concurrency {
		free <- struct{}{}
		// Short and unique, like Sidekiq's base-36 tids.
		tid := strconv.FormatInt(int64(i)+36*36, 36)
		m.wg.Go(func() {
			for u := range work {
				m.run(jobCtx, tid, u)
				free <- struct{}{}
			}
		})
	}
	m.wg.Go(func() {
		defer close(work)
		// Once quiet, finished jobs are acknowledged as they end, not
		// with a next fetch that never comes.
		defer m.fetch.acks.setWaiting(true)
		m.loop(jobCtx, work, free)
	})
}

func (m *manager) wait() { m.wg.Wait() }

func (m *manager) loop(jobCtx context.Context, work chan<- *UnitOfWork, free chan struct{}) {
	backoff := newBackoff()
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
		n := 1 + m.collect(free)
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
		for i, u := range us {
			if m.isQuiet() {
				// Fetched after quiet: give them back untouched, they run next.
				for _, u := range us[i:] {
					if err := m.fetch.requeue(context.WithoutCancel(jobCtx), u); err != nil {
						m.log.Error("requeue after quiet", "queue", u.Queue, "err", err)
					}
				}
				return
			}
			work <- u
		}
	}
}

// collect takes the free processors beyond the first: it yields to let
// processors that are about to finish do so, as long as each yield frees
// more (a few times at most), so one round trip serves them all.
func (m *manager) collect(free <-chan struct{}) int {
	n := 0
	for range 4 {
		runtime.Gosched()
		got := 0
	drain:
		for n+got < m.concurrency-1 {
			select {
			case <-free:
				got++
			default:
				break drain
			}
		}
		n += got
		if got == 0 || n == m.concurrency-1 {
			break
		}
	}
	return n
}

func (m *manager) isQuiet() bool {
	select {
	case <-m.quiet:
		return true
	default:
		return false
	}
}
