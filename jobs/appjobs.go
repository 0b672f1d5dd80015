package jobs

import (
	"context"
	"errors"

	"github.com/pallarel/pallarel/sidekiq"
)

// The Rails app's monitor jobs (ActiveJob, queue "default", no arguments).
// Its cron runs them with perform_now from rake tasks; any of them may also
// be perform_later'ed, and then a Go worker on "default" runs them.
const (
	DeadLetterMonitorClass    = "DeadLetterMonitorJob"
	ForceShutdownMonitorClass = "ForceShutdownMonitorJob"
	IdleEcsTaskMonitorClass   = "IdleEcsTaskMonitorJob"
)

// registerAppMonitors binds the three monitor classes to the monitors the
// `report` worker runs every minute (monitor.go), so a Ruby perform_later
// of one does that pass at once. Like the app's jobs, which rescue every
// error in perform, a failed pass is logged and the job ends: the next
// pass, a minute later, tries again.
func (p *Pipeline) registerAppMonitors(reg *sidekiq.Registry) error {
	monitor := func(name string, pass func(context.Context) error) sidekiq.Handler {
		return func(ctx context.Context, job *sidekiq.Job) error {
			if err := pass(ctx); err != nil && ctx.Err() == nil {
				p.log.Warn(name+": pass failed", "jid", job.JID, "err", err)
			}
			return ctx.Err()
		}
	}
	return errors.Join(
		reg.Register(monitor(DeadLetterMonitorClass, func(ctx context.Context) error {
			_, err := p.RecordDeadRows(ctx)
			return err
		}), DeadLetterMonitorClass),
		reg.Register(monitor(ForceShutdownMonitorClass, func(ctx context.Context) error {
			p.RetryForcedStops(ctx)
			return nil
		}), ForceShutdownMonitorClass),
		reg.Register(monitor(IdleEcsTaskMonitorClass, func(ctx context.Context) error {
			_, err := p.StopIdleWorkers(ctx)
			return err
		}), IdleEcsTaskMonitorClass),
	)
}
