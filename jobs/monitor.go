package jobs

import (
	"context"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/sidekiq"
)

// MonitorInterval is how often the report worker runs the monitors.
const MonitorInterval = time.Minute

// RunMonitors does, inside the `report` worker, what the Rails app ran from
// cron (DeadLetterMonitorJob, ForceShutdownMonitorJob, IdleEcsTaskMonitorJob),
// until ctx ends.
func (p *Pipeline) RunMonitors(ctx context.Context, every time.Duration) {
	supervised := make(chan struct{})
	go func() { defer close(supervised); p.RunSupervisor(ctx) }()
	defer func() { <-supervised }()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := p.RecordDeadRows(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("dead-letter monitor", "err", err)
		}
		p.RetryForcedStops(ctx)
		if _, err := p.StopIdleWorkers(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("idle-task monitor", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RecordDeadRows records as failed every row job in the dead set whose row
// has no result yet: rows killed from the Web UI, or by a Ruby worker,
// never reach our death handler. It returns how many it recorded.
func (p *Pipeline) RecordDeadRows(ctx context.Context) (int, error) {
	n := 0
	for start := 0; ; start += 500 {
		entries, err := p.d.API.SetEntries(ctx, sidekiq.DeadSet, start, 500)
		if err != nil {
			return n, err
		}
		for _, e := range entries {
			if e.Job == nil || (e.Job.HandlerClass() != contract.Row.Name && e.Job.HandlerClass() != "ProcessCsvRowJob") {
				continue
			}
			before, _ := p.ledger.Count(ctx, tokenOf(e.Job))
			p.rowDied(ctx, e.Job, deadError{e.Job.StringField("error_message")})
			if after, _ := p.ledger.Count(ctx, tokenOf(e.Job)); after > before {
				n++
			}
		}
		if len(entries) < 500 {
			return n, nil
		}
	}
}

func tokenOf(j *sidekiq.Job) string {
	args, err := j.Arguments()
	if err != nil || len(args) < 5 {
		return ""
	}
	var token string
	_ = unmarshalArg(args[4], &token)
	return token
}

type deadError struct{ msg string }

func (e deadError) Error() string {
	if e.msg == "" {
		return "job is in the dead set"
	}
	return e.msg
}

// RetryForcedStops tries again to stop the workers of finished runs whose
// stop failed (force_shutdown_at set), as ForceShutdownMonitorJob did.
func (p *Pipeline) RetryForcedStops(ctx context.Context) {
	statuses, err := p.d.DB.RecentStatuses(ctx, 200)
	if err != nil {
		p.log.Warn("force-shutdown monitor", "err", err)
		return
	}
	for _, s := range statuses {
		if s.ForceShutdownAt == nil || s.WorkerTaskArn == "" {
			continue
		}
		if err := p.d.Launcher.Stop(ctx, launcher.Task{ID: s.WorkerTaskArn}, "force shutdown: report "+s.Token); err != nil {
			p.log.Warn("force-shutdown monitor: stop failed", "token", s.Token, "task", s.WorkerTaskArn, "err", err)
			continue
		}
		if err := p.d.DB.ClearForceShutdown(ctx, s.Token); err != nil {
			p.log.Warn("force-shutdown monitor", "token", s.Token, "err", err)
		}
	}
}

// IdleAfter is how long a run must have been quiet before the idle-task
// monitor stops its worker.
const IdleAfter = 5 * time.Minute

// StopIdleWorkers stops the workers of runs that have no work left (nothing
// queued, scheduled, retrying or running on the token's queue) but are not
// finalized, once they have been quiet for IdleAfter, as the Rails app's
// IdleEcsTaskMonitorJob did for ECS tasks. It returns how many it stopped.
func (p *Pipeline) StopIdleWorkers(ctx context.Context) (int, error) {
	statuses, err := p.d.DB.RecentStatuses(ctx, 200)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range statuses {
		if s.WorkerTaskArn == "" || s.FinalizedAt != nil || s.ForceShutdownAt != nil ||
			p.d.Now().Sub(s.UpdatedAt) < IdleAfter {
			continue
		}
		pending, err := p.d.API.PendingFor(ctx, s.QueueName)
		if err != nil {
			return n, err
		}
		if pending.Total() > 0 {
			continue
		}
		msg := "idle-task monitor: worker stopped, no work left for an unfinished run"
		p.log.Warn(msg, "token", s.Token, "task", s.WorkerTaskArn)
		if err := p.d.Launcher.Stop(ctx, launcher.Task{ID: s.WorkerTaskArn}, msg); err != nil {
			p.warnIf(p.d.DB.SetForceShutdown(ctx, s.Token), "SetForceShutdown") // the force-shutdown monitor retries
			continue
		}
		p.warnIf(p.d.DB.SetLastError(ctx, s.Token, msg), "SetLastError")
		p.warnIf(p.d.DB.ClearWorkerTask(ctx, s.Token), "ClearWorkerTask")
		n++
	}
	return n, nil
}
