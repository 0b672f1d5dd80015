package jobs

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/models"
)

// State is where a run is. A run starts Splitting, is Processing once its
// rows are pushed, and ends once, in Completed, Failed or Cancelled,
// through End; "Retry failed rows" reopens a Completed run, which ends
// again through End. The values are the database's (models.Run*).
type State string

const (
	Splitting  State = models.RunSplitting
	Processing State = models.RunProcessing
	Completed  State = models.RunCompleted
	Failed     State = models.RunFailed
	Cancelled  State = models.RunCancelled
)

// Ended says whether s is an end.
func (s State) Ended() bool { return s == Completed || s == Failed || s == Cancelled }

// Ending is how a run ends.
type Ending struct {
	State  State  // Completed, Failed or Cancelled
	Reason string // why it failed or was cancelled; empty for Completed
	// Worker is why the token's worker is stopped (the launcher's reason);
	// empty: "report <token> <state>".
	Worker string
}

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
func (p *Pipeline) End(ctx context.Context, token string, e Ending) (bool, error) {
	if !e.State.Ended() {
		return false, fmt.Errorf("end %s: %q is not an end", token, e.State)
	}
	queue, err := p.tokenQueue(token)
	if err != nil {
		return false, err
	}
	if e.State == Completed {
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
	if e.State != Completed {
		msg := e.Reason
		if e.State == Cancelled && !strings.HasPrefix(msg, "cancelled") {
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
	if e.State == Cancelled {
		if j, err := toSidekiq(p.d.Client.Dialect(), contract.CancelCleanupJob(token)); err == nil {
			j.At = p.d.Now().Add(CancelCleanupDelay)
			if _, err := p.d.Client.Push(ctx, j); err != nil {
				log.Warn("ended run: schedule the second cleanup", "err", err)
			}
		}
	}
	p.runEnded(ctx, token)
	if e.State == Completed {
		log.Info("run ended")
	} else {
		log.Warn("run ended", "reason", e.Reason)
	}
	return true, nil
}
