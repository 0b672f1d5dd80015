package sidekiq

import "time"

// MaxPrefetch bounds Options.Prefetch and the adaptive prefetch depth.
const MaxPrefetch = 1000

// prefetchWindow is how much work the adaptive prefetch holds: as many
// jobs as the processors finish in this time. Short jobs then come in
// batches of hundreds per round trip, while a job of 10 ms or more is not
// prefetched at all (it would wait in this process's memory while another
// process could run it, which Sidekiq never does).
const prefetchWindow = 5 * time.Millisecond

// tuneEvery is how often the adaptive depth is measured and moved.
const tuneEvery = 50 * time.Millisecond

// prefetchPlan is Options.Prefetch resolved: start at depth, never above
// most, and with auto move with the processors' pace.
type prefetchPlan struct {
	depth, most int
	auto        bool
}

// depthTuner keeps the prefetch depth: the manager's slots are its
// processors plus depth, one token each. With auto it measures how many
// jobs finish per second and sets the depth to what finishes in
// prefetchWindow (Little's law): at once when that is more, since a short
// run of jobs is over before a slow climb ends, and halfway when less, so
// one odd period does not empty it. Growing adds tokens; shrinking leaves a debt
// of tokens that are burnt as they come back, so no fetched job is given
// back for it. Only the manager's fetch loop uses it.
type depthTuner struct {
	plan   prefetchPlan
	depth  int
	debt   int
	window time.Duration
	at     time.Time // the last measurement
	done   int64     // jobs finished at the last measurement
}

func newDepthTuner(plan prefetchPlan, now time.Time) *depthTuner {
	return &depthTuner{plan: plan, depth: plan.depth, window: prefetchWindow, at: now}
}

// pay burns owed tokens out of n taken ones and returns how many are left
// to fetch for.
func (d *depthTuner) pay(n int) int {
	p := min(d.debt, n)
	d.debt -= p
	return n - p
}

// tune measures the pace since the last measurement, at most every
// tuneEvery, given the jobs finished so far; it returns how many tokens to
// add to the free slots (the depth grew).
func (d *depthTuner) tune(now time.Time, finished int64) (add int) {
	if !d.plan.auto {
		return 0
	}
	elapsed := now.Sub(d.at)
	if elapsed < tuneEvery {
		return 0
	}
	rate := float64(finished-d.done) / elapsed.Seconds()
	d.at, d.done = now, finished
	target := min(int(rate*d.window.Seconds()), d.plan.most)
	next := target
	if target < d.depth {
		next = (d.depth + target) / 2
	}
	return d.set(next)
}

// set moves the depth to next: it pays the debt first, then adds tokens;
// shrinking adds to the debt.
func (d *depthTuner) set(next int) (add int) {
	if next >= d.depth {
		k := next - d.depth
		paid := min(d.debt, k)
		d.debt -= paid
		add = k - paid
	} else {
		d.debt += d.depth - next
	}
	d.depth = next
	return add
}
