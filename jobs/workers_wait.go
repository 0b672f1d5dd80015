package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/models"
)

// The caps on token workers (launcher/fleet) turn a burst of uploads into a
// queue: a run whose worker does not fit waits its turn, its page says
// "waiting for a worker (N ahead)", and the run supervisor asks again every
// pass. A wait is not a failed launch: it spends no relaunch.

// noteWaiting records on the run's page that it waits for a worker, when
// err says so, and reports whether it did.
func (p *Pipeline) noteWaiting(ctx context.Context, token string, err error) bool {
	var we *launcher.WaitError
	if !errors.As(err, &we) {
		return false
	}
	st, serr := p.d.DB.StatusByToken(ctx, token)
	if serr == nil && st.StateReason != we.Error() {
		p.warnIf(p.d.DB.SetState(ctx, token, st.RunState(), we.Error()), "SetState")
	}
	return true
}

// waitingForWorker reports whether the launcher keeps token's run waiting
// for its first worker.
func (p *Pipeline) waitingForWorker(ctx context.Context, token string) bool {
	q, ok := launcher.As[launcher.Queuer](p.d.Launcher)
	if !ok {
		return false
	}
	_, waiting, err := q.Waiting(ctx, token)
	p.warnIf(err, "fleet Waiting")
	return waiting
}

// launchWaiting asks again for the first worker of a waiting run; the
// supervisor calls it every pass while the run waits.
func (p *Pipeline) launchWaiting(ctx context.Context, st models.CsvProcessingStatus, queue string, now time.Time) error {
	task, err := p.d.Launcher.Launch(ctx, launcher.Request{Token: st.Token, Queue: queue})
	if p.noteWaiting(ctx, st.Token, err) {
		return nil
	}
	if err != nil {
		p.warnIf(p.d.DB.SetState(ctx, st.Token, st.RunState(), "worker launch failed: "+err.Error()), "SetState")
		return nil
	}
	if task.ID != "" {
		if err := p.d.DB.RecordWorker(ctx, st.Token, task.ID, now); err != nil {
			return err
		}
	}
	p.log.Info("run supervisor: a waiting run got its worker", "token", st.Token, "task", task.ID)
	p.warnIf(p.d.DB.SetState(ctx, st.Token, st.RunState(), ""), "SetState")
	return nil
}

// scaleRun tells the launcher where the run stands, so it can give the run
// more workers or fewer (launcher/fleet, RUN_TARGET_DURATION).
func (p *Pipeline) scaleRun(ctx context.Context, st models.CsvProcessingStatus, queue string, total, recorded int, splitDone bool, queued int) {
	sc, ok := launcher.As[launcher.Scaler](p.d.Launcher)
	if !ok || st.FinalizedAt != nil {
		return
	}
	// The target runs from the upload: time spent waiting for a worker counts.
	started := st.CreatedAt
	if total == 0 && st.SplitBytesRead > 0 && st.SplitBytesTotal > 0 {
		// A big run's split reads the upload a window at a time, so its
		// count comes last: estimate it from the bytes read, as its page does.
		total = int(float64(st.SplitRows) * float64(st.SplitBytesTotal) / float64(st.SplitBytesRead))
	}
	p.warnIf(sc.Scale(ctx, launcher.Progress{
		Token: st.Token, Queue: queue, Total: total, Done: recorded, Queued: queued,
		SplitDone: splitDone, StartedAt: started, FirstWorker: st.WorkerTaskArn,
	}), "scale run")
}
