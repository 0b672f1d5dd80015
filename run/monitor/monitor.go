// Package monitor runs, inside the report worker, what the Rails app ran
// from cron: the dead-letter monitor (dead row jobs recorded as failed
// rows), the force-shutdown monitor (stops that failed, tried again) and
// the idle-task monitor (workers of unfinished runs with no work left,
// stopped). Each pass is a method tests call directly; Run loops them.
//
// It reads runs from models, work from the Sidekiq API, stops workers with
// a launcher, and records dead rows through its owner's function; it does
// not import jobs.
package monitor

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/sidekiq"
)

// Interval is how often the report worker runs the monitors.
const Interval = time.Minute

// IdleAfter is how long a run must have been quiet before the idle-task
// monitor stops its worker.
const IdleAfter = 5 * time.Minute

// The Rails app's monitor jobs (ActiveJob, queue "default", no arguments).
// Its cron runs them with perform_now from rake tasks; any of them may also
// be perform_later'ed, and then a Go worker on "default" runs them.
const (
	DeadLetterClass    = "DeadLetterMonitorJob"
	ForceShutdownClass = "ForceShutdownMonitorJob"
	IdleEcsTaskClass   = "IdleEcsTaskMonitorJob"
)

// Runs is what the monitors read and write of runs (models.Store has it).
type Runs interface {
	RecentStatuses(ctx context.Context, limit int) ([]models.CsvProcessingStatus, error)
	ClearForceShutdown(ctx context.Context, token string) error
	SetForceShutdown(ctx context.Context, token string) error
	SetLastError(ctx context.Context, token, msg string) error
	ClearWorkerTask(ctx context.Context, token string) error
}

// Params builds Monitors.
type Params struct {
	Runs     Runs
	Launcher launcher.Launcher
	API      *sidekiq.API
	// DeadRows records the row jobs of the dead set that have no result
	// yet as failed rows, and says how many (the run's ledger is its
	// owner's).
	DeadRows func(ctx context.Context) (int, error)
	Logger   *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Monitors are the three passes.
type Monitors struct{ p Params }

// New builds Monitors; every field but Logger and Now is required.
func New(p Params) (*Monitors, error) {
	if p.Runs == nil || p.Launcher == nil || p.API == nil || p.DeadRows == nil {
		return nil, errors.New("monitor: Runs, Launcher, API and DeadRows are required")
	}
	p.Logger = cmp.Or(p.Logger, slog.Default())
	if p.Now == nil {
		p.Now = time.Now
	}
	return &Monitors{p: p}, nil
}

// Run runs the passes every interval until ctx ends.
func (m *Monitors) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		m.RunOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunOnce runs each pass once, logging what fails.
func (m *Monitors) RunOnce(ctx context.Context) {
	if _, err := m.p.DeadRows(ctx); err != nil && ctx.Err() == nil {
		m.p.Logger.Warn("dead-letter monitor", "err", err)
	}
	m.RetryForcedStops(ctx)
	if _, err := m.StopIdleWorkers(ctx); err != nil && ctx.Err() == nil {
		m.p.Logger.Warn("idle-task monitor", "err", err)
	}
}

// RetryForcedStops tries again to stop the workers of finished runs whose
// stop failed (force_shutdown_at set), as ForceShutdownMonitorJob did.
func (m *Monitors) RetryForcedStops(ctx context.Context) {
	statuses, err := m.p.Runs.RecentStatuses(ctx, 200)
	if err != nil {
		m.p.Logger.Warn("force-shutdown monitor", "err", err)
		return
	}
	for _, s := range statuses {
		if s.ForceShutdownAt == nil || s.WorkerTaskArn == "" {
			continue
		}
		if err := m.p.Launcher.Stop(ctx, launcher.Task{ID: s.WorkerTaskArn}, "force shutdown: report "+s.Token); err != nil {
			m.p.Logger.Warn("force-shutdown monitor: stop failed", "token", s.Token, "task", s.WorkerTaskArn, "err", err)
			continue
		}
		if err := m.p.Runs.ClearForceShutdown(ctx, s.Token); err != nil {
			m.p.Logger.Warn("force-shutdown monitor", "token", s.Token, "err", err)
		}
	}
}

// StopIdleWorkers stops the workers of runs that have no work left (nothing
// queued, scheduled, retrying or running on the token's queue) but are not
// finalized, once they have been quiet for IdleAfter, as the Rails app's
// IdleEcsTaskMonitorJob did for ECS tasks. It returns how many it stopped.
func (m *Monitors) StopIdleWorkers(ctx context.Context) (int, error) {
	statuses, err := m.p.Runs.RecentStatuses(ctx, 200)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range statuses {
		if s.WorkerTaskArn == "" || s.FinalizedAt != nil || s.ForceShutdownAt != nil ||
			m.p.Now().Sub(s.UpdatedAt) < IdleAfter {
			continue
		}
		pending, err := m.p.API.PendingFor(ctx, s.QueueName)
		if err != nil {
			return n, err
		}
		if pending.Total() > 0 {
			continue
		}
		msg := "idle-task monitor: worker stopped, no work left for an unfinished run"
		m.p.Logger.Warn(msg, "token", s.Token, "task", s.WorkerTaskArn)
		if err := m.p.Launcher.Stop(ctx, launcher.Task{ID: s.WorkerTaskArn}, msg); err != nil {
			m.warnIf(m.p.Runs.SetForceShutdown(ctx, s.Token), "SetForceShutdown") // the force-shutdown monitor retries
			continue
		}
		m.warnIf(m.p.Runs.SetLastError(ctx, s.Token, msg), "SetLastError")
		m.warnIf(m.p.Runs.ClearWorkerTask(ctx, s.Token), "ClearWorkerTask")
		n++
	}
	return n, nil
}

func (m *Monitors) warnIf(err error, what string) {
	if err != nil {
		m.p.Logger.Warn("idle-task monitor: "+what, "err", err)
	}
}

// Register binds the app's three monitor classes to the passes, so a Ruby
// perform_later of one does that pass at once. Like the app's jobs, which
// rescue every error in perform, a failed pass is logged and the job ends:
// the next pass, a minute later, tries again.
func (m *Monitors) Register(reg *sidekiq.Registry) error {
	job := func(name string, pass func(context.Context) error) sidekiq.Handler {
		return func(ctx context.Context, j *sidekiq.Job) error {
			if err := pass(ctx); err != nil && ctx.Err() == nil {
				m.p.Logger.Warn(name+": pass failed", "jid", j.JID, "err", err)
			}
			return ctx.Err()
		}
	}
	return errors.Join(
		reg.Register(job(DeadLetterClass, func(ctx context.Context) error {
			_, err := m.p.DeadRows(ctx)
			return err
		}), DeadLetterClass),
		reg.Register(job(ForceShutdownClass, func(ctx context.Context) error {
			m.RetryForcedStops(ctx)
			return nil
		}), ForceShutdownClass),
		reg.Register(job(IdleEcsTaskClass, func(ctx context.Context) error {
			_, err := m.StopIdleWorkers(ctx)
			return err
		}), IdleEcsTaskClass),
	)
}
