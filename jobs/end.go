package jobs

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/run"
)

// End is the one transition every ending of a run goes through, as River's
// completer owns a job's state changes: the split that cannot read its CSV,
// a split or finalize job that died, the supervisor giving up, a cancel,
// and the finalizer's completion. It records the end once (the first
// caller wins; a later one gets false and does nothing), then, in this
// order, whatever fails along the way:
//
//  1. the report and the run's last error say why (Failed, Cancelled; the
//     finalizer has marked a Completed report with its ZIP already), and a
//     partial ZIP is deleted;
//  2. the run's jobs leave Redis (its queue, its jobs elsewhere), its row
//     files are deleted and the ledger expires (cleanupEnded), before
//  3. its worker is stopped, so a stop that falls back on a scheduled
//     IdleShutdownJob is not swept by the cleanup;
//  4. a cancelled run's second cleanup is scheduled;
//  5. the webhook delivery is enqueued.
//
// A Completed end is recorded by the caller's claim (ClaimFinalize), which
// End completes with the end's time; the others claim it here (EndRun).
func (p *Pipeline) End(ctx context.Context, token string, e run.Ending) (bool, error) {
	if !e.State.Ended() {
		return false, fmt.Errorf("end %s: %q is not an end", token, e.State)
	}
	queue, err := p.tokenQueue(token)
	if err != nil {
		return false, err
	}
	if e.State == run.Completed {
		if err := p.d.DB.MarkEnded(ctx, token, string(e.State), e.Reason); err != nil {
			p.log.Warn("record the run's end", "token", token, "err", err)
		}
	} else {
		won, err := p.d.DB.EndRun(ctx, token, string(e.State), e.Reason)
		if err != nil {
			return false, fmt.Errorf("end %s: %w", token, err)
		}
		if !won {
			return false, nil
		}
	}
	// The run has ended whatever fails below: the cleanup goes on with a
	// context the caller's cancellation does not cut short.
	ctx = context.WithoutCancel(ctx)
	log := p.log.With("token", token, "queue", queue, "state", string(e.State))
	if e.State != run.Completed {
		msg := e.Reason
		if e.State == run.Cancelled && !strings.HasPrefix(msg, "cancelled") {
			msg = "cancelled: " + msg
		}
		p.warnIf(p.d.DB.SetLastError(ctx, token, msg), "SetLastError")
		if rep, err := p.d.DB.ReportByToken(ctx, token); err == nil {
			p.warnIf(p.d.DB.MarkReportFailed(ctx, rep.ID, msg), "MarkReportFailed")
		}
		p.warnIf(p.d.Store.Delete(ctx, contract.ResultKey(token)), "delete a partial result")
	}
	p.cleanupEnded(ctx, token, queue)
	worker := ""
	if st, err := p.d.DB.StatusByToken(ctx, token); err == nil {
		worker = st.WorkerTaskArn
	} else {
		log.Warn("ended run: read its worker", "err", err)
	}
	p.stopWorker(ctx, token, worker, cmp.Or(e.Worker, "report "+token+" "+string(e.State)))
	if e.State == run.Cancelled {
		if j, err := toSidekiq(p.d.Client.Dialect(), contract.CancelCleanupJob(token)); err == nil {
			j.At = p.d.Now().Add(CancelCleanupDelay)
			if _, err := p.d.Client.Push(ctx, j); err != nil {
				log.Warn("ended run: schedule the second cleanup", "err", err)
			}
		}
	}
	p.runEnded(ctx, token)
	if e.State == run.Completed {
		log.Info("run ended")
	} else {
		log.Warn("run ended", "reason", e.Reason)
	}
	return true, nil
}
