package fleet

import (
	"context"
	"math"
	"slices"
	"time"

	"github.com/pallarel/pallarel/launcher"
)

// meter measures one run's rows per second per worker.
type meter struct {
	seen      time.Time // last Scale of the run
	at        time.Time // start of the current measurement
	done      int       // rows recorded at `at`
	workers   int       // workers during the measurement
	perWorker float64   // rows/s per worker; 0 until measured
}

// observe starts a new measurement when the worker count changed (new
// workers start slowly) and otherwise folds the one that ran for at least
// minMeasure into the estimate.
func (m *meter) observe(now time.Time, done, workers int, minMeasure time.Duration) {
	m.seen = now
	if m.at.IsZero() || workers != m.workers || done < m.done {
		m.at, m.done, m.workers = now, done, workers
		return
	}
	el := now.Sub(m.at)
	if el < minMeasure {
		return
	}
	rate := float64(done-m.done) / el.Seconds() / float64(workers)
	if m.perWorker == 0 {
		m.perWorker = rate
	} else {
		m.perWorker = 0.5*m.perWorker + 0.5*rate
	}
	m.at, m.done = now, done
}

// Plan is how many workers a run needs to finish by the target: the rows
// left over what one worker does in the time left, at least 1 and at most
// maxPerRun. Once every row is pushed, it is also at most what the jobs
// waiting in the queue can keep busy (concurrency rows each), so workers
// stop as the queue drains. perWorker 0 (not measured yet) keeps current.
func Plan(p launcher.Progress, perWorker float64, current int, target time.Duration, maxPerRun, concurrency int, now time.Time) int {
	want := current
	if p.Total > 0 && perWorker > 0 {
		left := target - now.Sub(p.StartedAt)
		// Late, or nearly: plan for a tenth of the target, so a late
		// run gets every worker it may have rather than a division by ~0.
		left = max(left, target/10, time.Second)
		remaining := max(p.Total-p.Done, 0)
		want = int(math.Ceil(float64(remaining) / (perWorker * left.Seconds())))
	}
	if p.SplitDone {
		want = min(want, int(math.Ceil(float64(p.Queued)/float64(max(concurrency, 1)))))
	}
	return min(max(want, 1), maxPerRun)
}

// Scale implements launcher.Scaler: it adds workers to a run that would
// miss the target and stops extra ones as its queue drains. The run's
// first worker (p.FirstWorker) is never stopped here.
func (f *Fleet) Scale(ctx context.Context, p launcher.Progress) error {
	if f.cfg.Target <= 0 || f.cfg.MaxPerRun <= 1 {
		return nil
	}
	now := f.now()
	mine, err := f.reconcileRun(ctx, p.Token)
	if err != nil || len(mine) == 0 {
		return err // no worker yet: the first one is launched as the run starts
	}
	f.mu.Lock()
	var active []slot
	for _, s := range mine {
		if !f.stopping[s.field] {
			active = append(active, s)
		}
	}
	m := f.meters[p.Token]
	if m == nil {
		m = &meter{}
		f.meters[p.Token] = m
	}
	m.observe(now, p.Done, len(active), f.cfg.MinMeasure)
	perWorker := m.perWorker
	for tok, mt := range f.meters { // runs no longer scaled
		if now.Sub(mt.seen) > 10*time.Minute {
			delete(f.meters, tok)
		}
	}
	f.mu.Unlock()

	want := Plan(p, perWorker, len(active), f.cfg.Target, f.cfg.MaxPerRun, f.cfg.WorkerConcurrency, now)
	switch {
	case want > len(active):
		return f.grow(ctx, p, want-len(active))
	case want < len(active):
		f.shrink(p, active, len(active)-want)
	}
	return nil
}

// multiLauncher is a launcher that starts several workers in one call
// (ECS: RunTask's count).
type multiLauncher interface {
	LaunchN(ctx context.Context, req launcher.Request, n int) ([]launcher.Task, error)
}

func (f *Fleet) grow(ctx context.Context, p launcher.Progress, n int) error {
	fields, _, err := f.acquire(ctx, p.Token, n, true)
	if err != nil || len(fields) == 0 {
		return err
	}
	req := launcher.Request{Token: p.Token, Queue: p.Queue, Extra: true}
	var tasks []launcher.Task
	if ml, ok := f.inner.(multiLauncher); ok {
		tasks, err = ml.LaunchN(ctx, req, len(fields))
	} else {
		for range fields {
			t, lerr := f.inner.Launch(ctx, req)
			if lerr != nil {
				err = lerr
				break
			}
			tasks = append(tasks, t)
		}
	}
	for i, field := range fields {
		if i < len(tasks) && tasks[i].ID != "" {
			f.warn(f.bind(ctx, field, tasks[i].ID, p.Token), "bind a worker")
		} else {
			f.warn(f.release(context.WithoutCancel(ctx), field), "release a reservation")
		}
	}
	if len(tasks) > 0 {
		f.log.Info("fleet: more workers for a run", "token", p.Token, "added", len(tasks), "rows_left", p.Total-p.Done)
	}
	return err
}

// shrink stops n of the run's extra workers, newest first, in the
// background (a local worker's stop waits for its jobs); their slots are
// freed when the stop returns.
func (f *Fleet) shrink(p launcher.Progress, active []slot, n int) {
	extras := slices.DeleteFunc(slices.Clone(active), func(s slot) bool { return s.field == p.FirstWorker || s.pending() })
	slices.SortFunc(extras, func(a, b slot) int { return int(b.at - a.at) })
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range extras[:min(n, len(extras))] {
		f.stopping[s.field] = true
		f.wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			err := f.Stop(ctx, launcher.Task{ID: s.field}, "run "+p.Token+" needs fewer workers")
			f.warn(err, "stop an extra worker")
			f.mu.Lock()
			delete(f.stopping, s.field)
			f.mu.Unlock()
		})
		f.log.Info("fleet: stopping a worker the run no longer needs", "token", p.Token, "task", s.field, "queued", p.Queued)
	}
}
