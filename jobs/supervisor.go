package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/csvrows"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/ledger"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/run"
	"github.com/pallarel/pallarel/sidekiq"
)

// SuperviseConfig tunes the run supervisor.
type SuperviseConfig struct {
	// Interval is how often every unfinished run is reconciled. Defaults
	// to 5s.
	Interval time.Duration
	// LaunchGrace is how long a run's queue may hold work with no live
	// worker before the worker is launched again; each further relaunch
	// waits twice as long. Defaults to 45s (an ECS task takes about a
	// minute to start).
	LaunchGrace time.Duration
	// MaxRelaunches bounds the relaunches of one run's worker; then the
	// run fails with the reason. Defaults to 5.
	MaxRelaunches int
	// StallAfter is how long a run may go without a row ending before its
	// page says it is stalled, and why. Defaults to 2m.
	StallAfter time.Duration
}

func (c SuperviseConfig) withDefaults() SuperviseConfig {
	c.Interval = cmp.Or(c.Interval, 5*time.Second)
	c.LaunchGrace = cmp.Or(c.LaunchGrace, 45*time.Second)
	c.MaxRelaunches = cmp.Or(c.MaxRelaunches, 5)
	c.StallAfter = cmp.Or(c.StallAfter, 2*time.Minute)
	return c
}

// supervisor is what the run supervisor remembers between passes, per run.
// It is only memory: a restarted supervisor starts afresh and is merely
// slower to act.
type supervisor struct {
	mu       sync.Mutex
	runs     map[string]*runWatch
	epoch    string // the Redis epoch at the last pass (epoch.go)
	evicted  int64  // Redis' evicted_keys at the last pass
	lostData bool   // this pass found Redis lost data since the last one
}

type runWatch struct {
	seen            time.Time
	noConsumerSince time.Time
	lastLaunch      time.Time
	lastCount       int
	lastProgress    time.Time
	low             int          // rows below it are all recorded
	suspect         map[int]bool // rows found neither recorded nor held at the last pass
	finMissing      int          // passes in a row without a finalizer in Redis
	queued          []int        // rows waiting in the queue list at the last pass
}

func (s *supervisor) watch(token string, now time.Time) *runWatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runs == nil {
		s.runs = map[string]*runWatch{}
	}
	w := s.runs[token]
	if w == nil {
		w = &runWatch{lastProgress: now, low: 1, lastCount: -1}
		s.runs[token] = w
	}
	w.seen = now
	return w
}

// forgetOthers drops the memory of runs not seen in this pass.
func (s *supervisor) forget(before time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, w := range s.runs {
		if w.seen.Before(before) {
			delete(s.runs, t)
		}
	}
}

// RunSupervisor reconciles every unfinished run with what Redis holds, at
// once and then every Supervise.Interval, until ctx ends. It runs in the
// `report` worker and in the all-in-one server; several may run at once.
func (p *Pipeline) RunSupervisor(ctx context.Context) {
	for {
		if err := p.Supervise(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("run supervisor", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.d.Supervise.Interval):
		}
	}
}

// Supervise makes one pass over the unfinished runs. The upload in storage
// and the run in the database are the truth; Redis holds work that can be
// rebuilt:
//   - a run whose split has not pushed every row gets a feeder (the split
//     resumes, or starts again from storage when Redis lost its state);
//   - rows neither recorded nor queued, running, scheduled or retrying are
//     pushed again, once two passes agree they are gone;
//   - a split run without a finalizer in Redis gets one;
//   - a queue deleted from the dashboard cancels its run;
//   - a queue with work and no live worker gets its worker launched again,
//     a bounded number of times, then the run fails with the reason;
//   - a run without progress says why it is stalled.
func (p *Pipeline) Supervise(ctx context.Context) error {
	start := p.d.Now()
	// One supervisor acts at a time (the report workers and web servers
	// all run one): the others stand by until its lease lapses.
	leader, err := p.leadSupervision(ctx)
	if err != nil || !leader {
		return err
	}
	p.noteRedisEpoch(ctx)
	if err := p.resubmitLostSplits(ctx); err != nil {
		p.log.Warn("run supervisor: lost splits", "err", err)
	}
	if err := p.dropOrphans(ctx); err != nil {
		p.log.Warn("run supervisor: runs the Rails app finalized", "err", err)
	}
	runs, err := p.d.DB.UnfinishedStatuses(ctx, 1000)
	if err != nil {
		return err
	}
	var errs []error
	for _, st := range runs {
		if err := p.superviseRun(ctx, st); err != nil {
			errs = append(errs, fmt.Errorf("run %s: %w", st.Token, err))
		}
	}
	p.super.forget(start)
	return errors.Join(errs...)
}

// leadSupervision takes or renews the supervisor lease for three intervals.
func (p *Pipeline) leadSupervision(ctx context.Context) (bool, error) {
	return p.leases.Hold(ctx, contract.SupervisorKey, 3*p.d.Supervise.Interval)
}

func (p *Pipeline) superviseRun(ctx context.Context, st models.CsvProcessingStatus) error {
	now := p.d.Now()
	token := st.Token
	queue, err := p.tokenQueue(token)
	if err != nil {
		return err
	}
	if dropped, err := p.ledger.DropLegacy(ctx, token); err != nil {
		return err
	} else if dropped {
		// A run under way across an upgrade: its rows are fed again
		// from the stored upload, skipping those recorded since.
		p.log.Warn("the run's row ledger was written by an older Pallarel: rebuilding it from the upload", "token", token)
	}
	w := p.super.watch(token, now)
	spec, hasSpec := parseSpec(st.SourceSpec)
	total, splitDone, err := p.ledger.HasTotal(ctx, token)
	if err != nil {
		return err
	}
	if hasSpec && !splitDone {
		p.ensureFeeding(ctx, token)
	}
	qw, err := p.d.API.QueueWork(ctx, queue)
	if err != nil {
		return err
	}
	recorded, err := p.ledger.Count(ctx, token)
	if err != nil {
		return err
	}
	// Rows a Ruby worker ran are only in the database's count: such a
	// run's rows are never pushed again (books.go).
	books, _, err := p.runBooks(ctx, st, queue, recorded)
	if err != nil {
		return err
	}
	if books == BooksRuby {
		recorded = max(recorded, st.DoneCount+st.FailedCount)
	}
	if recorded != w.lastCount {
		w.lastCount, w.lastProgress = recorded, now
		if st.StateReason != "" && w.lastCount >= 0 {
			p.warnIf(p.d.DB.SetState(ctx, token, st.RunState(), ""), "SetState")
			st.StateReason = ""
		}
	}

	if hasSpec && splitDone && st.FinalizedAt == nil {
		if !qw.Listed && recorded < total {
			if !p.super.lostDataThisPass() {
				return p.endRun(ctx, token, models.RunCancelled, "the run's queue "+queue+" was deleted from the dashboard")
			}
			// Redis evicted Sidekiq's "queues" set (or failed over
			// without it): list the queue again; lost rows are pushed
			// again below.
			if err := p.lost.Relist(ctx, queue); err != nil {
				return err
			}
			p.log.Warn("run supervisor: the run's queue was unlisted while Redis lost data: listed again, not a cancel", "token", token, "queue", queue)
		}
		held, queued, finPresent := heldRows(qw)
		// A Ruby worker's fetch leaves no trace either: rows gone from the
		// list are not deleted, and rows not recorded are not lost.
		if deleted, err := p.queueEmptiedByHand(ctx, token, w, held, queued); books == BooksGo && err != nil {
			return err
		} else if books == BooksGo && deleted {
			return p.endRun(ctx, token, models.RunCancelled, "the run's queue "+queue+" was deleted from the dashboard")
		}
		w.queued = queued
		if recorded < total && books == BooksGo {
			if err := p.repairGaps(ctx, token, spec, w, total, held); err != nil {
				return err
			}
		}
		if finPresent || (books == BooksRuby && qw.Busy > 0) {
			// (A Ruby worker's running jobs show only in its work hash,
			// by queue: one of them may be the finalizer.)
			w.finMissing = 0
		} else if w.finMissing++; w.finMissing >= 2 {
			// The finalizer re-enqueues itself until the run ends; none
			// left in Redis means it was lost (or deleted): push another.
			fin, err := p.newFinalizeJob(queue, spec.Type, spec.ReportID, token)
			if err != nil {
				return err
			}
			if _, err := p.d.Client.Push(ctx, fin); err != nil {
				return fmt.Errorf("push finalizer: %w", err)
			}
			p.log.Warn("run supervisor: finalizer was missing, pushed again", "token", token)
			w.finMissing = 0
		}
	} else if hasSpec && !splitDone {
		// The rows waiting while the split pushes: a "Delete queue" just
		// after its last push is still seen at the first pass after it
		// (queueEmptiedByHand), though the finalizer's next copy lists
		// the queue again before that pass.
		_, w.queued, _ = heldRows(qw)
	}

	stalled := ""
	waiting := false
	if qw.HasWork() && len(qw.Consumers) == 0 {
		if w.noConsumerSince.IsZero() {
			w.noConsumerSince = now
		}
		stalled = "no live worker on queue " + queue
		if waiting = p.waitingForWorker(ctx, token); waiting {
			if err := p.launchWaiting(ctx, st, queue, now); err != nil {
				return err
			}
		} else {
			if st.StateReason == "" {
				// The page says why the run waits from the first pass, not
				// only once it counts as stalled.
				p.warnIf(p.d.DB.SetState(ctx, token, st.RunState(), "waiting: "+stalled), "SetState")
			}
			if err := p.maybeRelaunch(ctx, st, queue, w, now); err != nil {
				return err
			}
		}
	} else {
		w.noConsumerSince = time.Time{}
		p.scaleRun(ctx, st, queue, total, recorded, hasSpec && splitDone, len(w.queued))
	}
	if now.Sub(w.lastProgress) >= p.d.Supervise.StallAfter && st.FinalizedAt == nil && !waiting {
		reason := fmt.Sprintf("stalled: no row ended for %s", now.Sub(w.lastProgress).Round(time.Second))
		if stalled != "" {
			reason += "; " + stalled
		}
		if reason != st.StateReason {
			p.warnIf(p.d.DB.SetState(ctx, token, st.RunState(), reason), "SetState")
		}
	}
	return nil
}

// heldRows reads, in one pass over the queue's jobs, the row numbers of
// the row jobs Redis holds for it (anywhere), those of them waiting in the
// queue's list, and whether a finalizer is among them.
func heldRows(qw sidekiq.QueueWork) (held map[int]bool, queued []int, fin bool) {
	held = map[int]bool{}
	note := func(raw []byte, inList bool) {
		j, err := sidekiq.ParseJob(raw)
		if err != nil {
			return
		}
		switch j.HandlerClass() {
		case contract.Row.Name, "ProcessCsvRowJob":
			var n int
			if ok, _ := j.Field(contract.FieldRow, &n); ok && n > 0 {
				held[n] = true
				if inList {
					queued = append(queued, n)
				}
			}
		case contract.Finalize.Name, "FinalizeReportJob":
			fin = true
		}
	}
	for _, raw := range qw.Enqueued {
		note(raw, true)
	}
	for _, l := range [][][]byte{qw.Scheduled, qw.Retrying, qw.InFlight} {
		for _, raw := range l {
			note(raw, false)
		}
	}
	return held, queued, fin
}

// queueEmptiedByHand reports whether the rows that waited in the queue at
// the last pass have since vanished all at once: none of them waits in the
// list any more, and those that did not run since (not recorded) are, but
// for the few a worker had fetched, in Redis nowhere. A job leaves a queue
// only by being fetched (then it is in flight, retrying, dead or recorded)
// or by being deleted, and "Delete queue" is the one act that takes them
// all at once. It catches the deletion even after a later push listed the
// queue again, and while a worker goes on recording the rows it had
// fetched.
func (p *Pipeline) queueEmptiedByHand(ctx context.Context, token string, w *runWatch, held map[int]bool, queuedNow []int) (bool, error) {
	if len(w.queued) < 2 {
		return false, nil
	}
	waiting := make(map[int]bool, len(queuedNow))
	for _, n := range queuedNow {
		waiting[n] = true
	}
	for _, n := range w.queued {
		if waiting[n] {
			return false, nil
		}
	}
	have, err := p.ledger.Recorded(ctx, token, w.queued)
	if err != nil {
		return false, err
	}
	gone, running := 0, 0
	for i, n := range w.queued {
		switch {
		case have[i]:
		case held[n]:
			running++
		default:
			gone++
		}
	}
	return gone >= 2 && gone > running, nil
}

// gapScan bounds how many unrecorded rows one pass looks at.
const gapScan = 20000

// repairGaps pushes again the rows that are neither recorded nor held in
// Redis, once two passes in a row found the same rows gone (a row between
// its queue and the ledger is held by an in-flight list, so two passes
// agreeing is not a race).
func (p *Pipeline) repairGaps(ctx context.Context, token string, spec runSpec, w *runWatch, total int, held map[int]bool) error {
	missing, err := p.ledger.Unrecorded(ctx, token, w.low, total, gapScan)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		w.low = missing[0]
	} else {
		w.low = total + 1
	}
	gone := map[int]bool{}
	var confirmed []int
	for _, n := range missing {
		if held[n] {
			continue
		}
		gone[n] = true
		if w.suspect[n] {
			confirmed = append(confirmed, n)
		}
	}
	w.suspect = gone
	if len(confirmed) == 0 {
		return nil
	}
	p.log.Warn("run supervisor: rows neither recorded nor in Redis, pushing them again",
		"token", token, "rows", len(confirmed), "first", confirmed[0])
	if err := p.repushRows(ctx, token, spec, confirmed); err != nil {
		return err
	}
	for _, n := range confirmed {
		delete(w.suspect, n)
	}
	return nil
}

// repushRows reads the upload again and pushes the given rows.
func (p *Pipeline) repushRows(ctx context.Context, token string, spec runSpec, nums []int) error {
	queue, err := p.tokenQueue(token)
	if err != nil {
		return err
	}
	want := map[int]bool{}
	for _, n := range nums {
		want[n] = true
	}
	rc, err := p.d.Store.Open(ctx, spec.SourceKey)
	if err != nil {
		return fmt.Errorf("re-read %s: %w", spec.SourceKey, err)
	}
	defer rc.Close()
	rows, err := csvrows.NewReader(rc, csvrows.Options{Encoding: spec.Encoding})
	if err != nil {
		return fmt.Errorf("re-read %s: %w", spec.SourceKey, err)
	}
	src, err := p.refsFor(ctx, queue, newRowSource(spec.SourceKey, rows))
	if err != nil {
		return err
	}
	maxRow := slices.Max(nums)
	var batch []*sidekiq.Job
	var batchRows []int
	for {
		row, err := rows.Next()
		if errors.Is(err, io.EOF) || (err == nil && row.Number > maxRow) {
			break
		}
		if err != nil {
			return fmt.Errorf("re-read %s: %w", spec.SourceKey, err)
		}
		if !want[row.Number] {
			continue
		}
		if row.Err != nil {
			if _, _, err := p.recordRow(ctx, token, ledger.RowResult{Row: row.Number, Key: ledger.RowKey(row.Number, ""), Status: "failed",
				Error: row.ErrorText()}); err != nil {
				return err
			}
			continue
		}
		j, err := p.rowJob(queue, contract.ReportDir(token), token, spec, rows.Headers(), row, src)
		if err != nil {
			return err
		}
		batch = append(batch, j)
		batchRows = append(batchRows, row.Number)
	}
	return p.pushRows(ctx, token, batch, batchRows)
}

// maybeRelaunch launches the run's worker again when its queue has had
// work and no live consumer for LaunchGrace (doubling per relaunch), and
// fails the run once MaxRelaunches are spent.
func (p *Pipeline) maybeRelaunch(ctx context.Context, st models.CsvProcessingStatus, queue string, w *runWatch, now time.Time) error {
	if _, none := p.d.Launcher.(launcher.Noop); none {
		return nil // LAUNCHER=none: an operator runs the workers; the page says it is stalled
	}
	cfg := p.d.Supervise
	last := w.lastLaunch
	if st.WorkerStartedAt != nil && st.WorkerStartedAt.After(last) {
		last = *st.WorkerStartedAt
	}
	wait := cfg.LaunchGrace << min(st.LaunchAttempts, 6)
	if now.Sub(w.noConsumerSince) < cfg.LaunchGrace || now.Sub(last) < wait {
		return nil
	}
	reason := "no live worker on queue " + queue
	if wt, ok := p.d.Launcher.(launcher.Watcher); ok && st.WorkerTaskArn != "" {
		task := launcher.Task{ID: st.WorkerTaskArn}
		if st.WorkerStartedAt != nil {
			task.StartedAt = *st.WorkerStartedAt // a task just launched may not be visible yet
		}
		if ts, err := wt.TaskState(ctx, task); err == nil && !ts.Running && ts.Reason != "" {
			reason = "worker " + st.WorkerTaskArn + " stopped: " + ts.Reason
		}
	}
	attempts, err := p.d.DB.NoteLaunchAttempt(ctx, st.Token)
	if err != nil {
		return err
	}
	if attempts > cfg.MaxRelaunches {
		return p.endRun(ctx, st.Token, models.RunFailed,
			fmt.Sprintf("the worker could not be kept running (%d relaunches): %s", cfg.MaxRelaunches, reason))
	}
	w.lastLaunch = now
	p.log.Warn("run supervisor: launching the worker again", "token", st.Token, "attempt", attempts,
		"max", cfg.MaxRelaunches, "reason", reason)
	task, err := p.d.Launcher.Launch(ctx, launcher.Request{Token: st.Token, Queue: queue})
	if p.noteWaiting(ctx, st.Token, err) {
		return nil // the caps are full: the run waits its turn (launchWaiting)
	}
	if err != nil {
		p.warnIf(p.d.DB.SetState(ctx, st.Token, st.RunState(), fmt.Sprintf("worker relaunch %d/%d failed: %v", attempts, cfg.MaxRelaunches, err)), "SetState")
		return nil
	}
	if task.ID != "" {
		if err := p.d.DB.RecordWorker(ctx, st.Token, task.ID, now); err != nil {
			return err
		}
	}
	p.warnIf(p.d.DB.SetState(ctx, st.Token, st.RunState(), fmt.Sprintf("worker relaunched (%d/%d): %s", attempts, cfg.MaxRelaunches, reason)), "SetState")
	return nil
}

// endRun ends an unfinished run as failed or cancelled, once, through End.
// It is a no-op for a run that already ended.
func (p *Pipeline) endRun(ctx context.Context, token, state, reason string) error {
	_, err := p.End(ctx, token, run.Ending{State: run.State(state), Reason: reason})
	return err
}

// resubmitLostSplits pushes again the SplitCsvJob of uploads whose split
// never started (the job was lost with Redis before a worker took it): a
// report still pending a minute after its upload, with its CSV in storage,
// no run row and no SplitCsvJob for it in Redis.
func (p *Pipeline) resubmitLostSplits(ctx context.Context) error {
	reports, err := p.d.DB.PendingReports(ctx, p.d.Now().Add(-time.Minute), 100)
	if err != nil || len(reports) == 0 {
		return err
	}
	qw, err := p.d.API.QueueWork(ctx, contract.TriggerQueue)
	if err != nil {
		return err
	}
	queued := map[int64]bool{}
	qw.Jobs(func(raw []byte) {
		j, err := sidekiq.ParseJob(raw)
		if err != nil || j.HandlerClass() != contract.Split.Name {
			return
		}
		var src any
		var typ string
		var id int64
		if j.ScanArgs(&src, &typ, &id) == nil {
			queued[id] = true
		}
	})
	for _, r := range reports {
		if queued[r.ID] || r.Token == "" || r.SourceKey == "" {
			continue
		}
		if _, err := p.d.DB.StatusByToken(ctx, r.Token); err == nil {
			continue // the split started: the run supervisor has it
		}
		job, err := NewSplitJob(p.d.Client.Dialect(), contract.SourceRef{SourceKey: r.SourceKey, Token: r.Token}, r.ReportType.String(), r.ID)
		if err != nil {
			return err
		}
		if _, err := p.d.Client.Push(ctx, job); err != nil {
			return err
		}
		p.log.Warn("run supervisor: the upload's SplitCsvJob was lost, pushed again", "report_id", r.ID, "token", r.Token)
	}
	return nil
}
