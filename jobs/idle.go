package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/sidekiq"
)

// IdleRecheck is how long IdleShutdownJob waits before looking again.
const IdleRecheck = 30 * time.Second

// handleIdle stops a token's worker once it is idle: nothing waits in its
// queue, nothing of it is scheduled or retrying, and nothing of it runs
// (the Rails job looked at the queue alone and could stop a busy worker).
// Otherwise it looks again in 30 s. A run whose status row is gone ends
// the job quietly, as the app's. Args: [token].
func (p *Pipeline) handleIdle(ctx context.Context, job *sidekiq.Job) error {
	var token string
	if err := job.ScanArgs(&token); err != nil {
		return err
	}
	queue, err := p.tokenQueue(token)
	if err != nil {
		return err
	}
	// As the app's job: a run whose status row is gone (the app's
	// finalizer deletes it) or has no queue has nothing left to stop.
	status, err := p.d.DB.StatusByToken(ctx, token)
	if errors.Is(err, models.ErrNotFound) || (err == nil && status.QueueName == "") {
		p.log.Info("idle shutdown: the run's status row is gone, nothing to do", "token", token)
		return nil
	}
	if err != nil {
		return fmt.Errorf("idle %s: %w", token, err)
	}
	pending, err := p.d.API.PendingFor(ctx, queue)
	if err != nil {
		return err
	}
	left := pending.Total()
	if job.Queue == queue {
		left-- // this job itself
	}
	if left > 0 {
		again, err := toSidekiq(p.d.Client.Dialect(), contract.IdleJob(job.Queue, token))
		if err != nil {
			return err
		}
		again.At = p.d.Now().Add(IdleRecheck)
		if _, err := p.d.Client.Push(ctx, again); err != nil {
			return fmt.Errorf("idle %s: re-enqueue: %w", token, err)
		}
		return nil
	}
	p.log.Info("token worker idle: stopping", "token", token, "task", status.WorkerTaskArn)
	p.stopWorker(ctx, token, status.WorkerTaskArn, "idle: token "+token+" has no work left")
	return nil
}
