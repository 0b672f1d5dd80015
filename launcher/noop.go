package launcher

import (
	"cmp"
	"context"
	"log/slog"
	"time"
)

// Noop launches nothing: some other process (a long-running worker, an
// operator) drains the queues. It only logs.
type Noop struct {
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
	// SelfID and StopSelf are set by SelfStopping: Stop of the task this
	// process runs in calls StopSelf.
	SelfID   string
	StopSelf func(reason string)
}

var _ Launcher = Noop{}

// Launch implements Launcher; it returns a task with an empty ID.
func (n Noop) Launch(ctx context.Context, req Request) (Task, error) {
	if err := req.validate(); err != nil {
		return Task{}, err
	}
	cmp.Or(n.Logger, slog.Default()).InfoContext(ctx, "launcher none: not starting a worker", "token", req.Token, "queue", req.Queue)
	now := time.Now
	if n.Now != nil {
		now = n.Now
	}
	return Task{StartedAt: now()}, nil
}

// Stop implements Launcher.
func (n Noop) Stop(ctx context.Context, task Task, reason string) error {
	if n.SelfID != "" && task.ID == n.SelfID && n.StopSelf != nil {
		cmp.Or(n.Logger, slog.Default()).InfoContext(ctx, "stopping the task this worker runs in", "task", task.ID, "reason", reason)
		n.StopSelf(reason)
		return nil
	}
	cmp.Or(n.Logger, slog.Default()).InfoContext(ctx, "launcher none: not stopping a worker", "task", task.ID, "reason", reason)
	return nil
}
