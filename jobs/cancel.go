package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/run"
	"github.com/pallarel/pallarel/sidekiq"
)

// CancelReason is the reason and the report's error_message of a run the
// user cancelled.
const CancelReason = "cancelled by user"

// CancelCleanupDelay is how long after a cancel the second cleanup runs:
// longer than a worker's shutdown grace (25 s by default).
const CancelCleanupDelay = 60 * time.Second

// tokenJobScan bounds how many entries of the shared queues and sets a
// cancel looks through for the token's other jobs (its SplitCsvJob, an
// IdleShutdownJob): they are near the head, and these lists are short.
const tokenJobScan = 20000

// Cancel ends token's run as cancelled, once, through End: the run's status
// (the claim on finalized_at decides a race with the finalizer or another
// cancel), the report failed with "cancelled by user", the token's queue,
// its scheduled and retrying jobs and its row files gone, its worker
// stopped, the second cleanup scheduled, then the webhook. Rows still
// running finish their job, but the
// ledger's finalized_at guard keeps them from moving the counts or
// finalizing. A run whose split has not started yet is cancelled too: its
// SplitCsvJob is removed, and a split that starts anyway finds it ended.
// It returns ErrRunEnded (wrapped) when the run had already ended, and
// models.ErrNotFound when nothing knows the token.
func (p *Pipeline) Cancel(ctx context.Context, token string) error {
	queue, err := p.tokenQueue(token)
	if err != nil {
		return err
	}
	_, repErr := p.d.DB.ReportByToken(ctx, token)
	if repErr != nil && !errors.Is(repErr, models.ErrNotFound) {
		return fmt.Errorf("cancel %s: %w", token, repErr)
	}
	_, err = p.d.DB.StatusByToken(ctx, token)
	switch {
	case errors.Is(err, models.ErrNotFound) && repErr == nil:
		// Not split yet: make the status row, so the end is recorded
		// where every part of the pipeline looks.
		if _, err = p.d.DB.CreateStatus(ctx, token, queue, 0); err != nil {
			return fmt.Errorf("cancel %s: %w", token, err)
		}
	case err != nil:
		return fmt.Errorf("cancel %s: %w", token, err)
	}
	won, err := p.End(ctx, token, run.Ending{State: run.Cancelled, Reason: CancelReason, Worker: "report " + token + " cancelled"})
	if err != nil {
		return fmt.Errorf("cancel %s: %w", token, err)
	}
	if !won {
		return fmt.Errorf("cancel %s: %w", token, contract.ErrRunEnded)
	}
	p.log.Info("run cancelled", "token", token, "queue", queue)
	return nil
}

// handleCancelCleanup is contract.CancelCleanup: [token]. It cleans up a
// cancelled run once more, a while after the cancel (CancelCleanupDelay):
// rows running at the cancel may have stored their files, or a stopping
// worker given its jobs back to the token queue, after the first cleanup.
func (p *Pipeline) handleCancelCleanup(ctx context.Context, job *sidekiq.Job) error {
	var token string
	if err := job.ScanArgs(&token); err != nil {
		return err
	}
	queue, err := p.tokenQueue(token)
	if err != nil {
		return err
	}
	st, err := p.d.DB.StatusByToken(ctx, token)
	if err != nil {
		return fmt.Errorf("cancel cleanup %s: %w", token, err)
	}
	if st.RunState() == models.RunCancelled {
		p.cleanupEnded(ctx, token, queue)
	}
	return nil
}

// cleanupEnded removes what an ended run left in Redis and storage: its
// queue, its jobs elsewhere (but its webhook and second cleanup), its row
// files; the ledger expires in a week. End runs it for every ending.
func (p *Pipeline) cleanupEnded(ctx context.Context, token, queue string) {
	log := p.log.With("token", token, "queue", queue)
	if n, killed, err := p.purgeTokenQueue(ctx, token, queue); err != nil {
		log.Error("ended run: purge token queue", "err", err)
	} else {
		log.Info("ended run: token queue purged", "jobs", n, "foreign_to_dead_set", killed)
	}
	if n, err := p.removeTokenJobs(ctx, token); err != nil {
		log.Error("ended run: remove the token's other jobs", "err", err)
	} else if n > 0 {
		log.Info("ended run: removed the token's other jobs", "jobs", n)
	}
	p.packer.Release(token)
	if err := p.d.Store.DeletePrefix(ctx, contract.RowKeyPrefix(token)); err != nil {
		log.Warn("ended run: delete row files", "err", err)
	}
	p.removeAppDir(token)
	p.warnIf(p.ledger.Expire(ctx, token, 7*24*time.Hour), "Expire")
}

// removeTokenJobs removes token's jobs that are not on its own queue: its
// SplitCsvJob on the report queue, an IdleShutdownJob on default, and those
// of them waiting in the schedule or retry set. A webhook delivery is kept.
func (p *Pipeline) removeTokenJobs(ctx context.Context, token string) (int, error) {
	mine := func(raw []byte) bool {
		return bytes.Contains(raw, []byte(token)) &&
			!bytes.Contains(raw, []byte(contract.Webhook.Name)) && !bytes.Contains(raw, []byte(contract.CancelCleanup.Name))
	}
	n := 0
	for _, q := range []string{contract.TriggerQueue, "default"} {
		entries, err := p.d.API.QueueJobs(ctx, q, 0, tokenJobScan)
		if err != nil {
			return n, err
		}
		for _, e := range entries {
			if !mine(e.Raw) {
				continue
			}
			ok, err := p.d.API.DeleteQueueJob(ctx, q, e.Raw)
			if err != nil {
				return n, err
			}
			if ok {
				n++
			}
		}
	}
	for _, set := range []sidekiq.SetName{sidekiq.ScheduledSet, sidekiq.RetrySet} {
		entries, err := p.d.API.SetEntries(ctx, set, 0, tokenJobScan)
		if err != nil {
			return n, err
		}
		for _, e := range entries {
			if !mine(e.Raw) {
				continue
			}
			ok, err := p.d.API.Delete(ctx, set, e)
			if err != nil {
				return n, err
			}
			if ok {
				n++
			}
		}
	}
	return n, nil
}
