// Package launcher starts and stops the per-token worker that drains a
// report's queue: an ECS Fargate task in production (as the Rails app's
// SplitCsvJob does), a local process in development, an in-process function
// in the all-in-one server, or nothing at all.
package launcher

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Request says which worker to start.
type Request struct {
	// Token is the report token; one worker per token.
	Token string
	// Queue is the token's Sidekiq queue the worker must listen on.
	Queue string
}

// Task is a started worker.
type Task struct {
	// ID is the ECS task ARN, or a local process id.
	ID string
	// StartedAt is when the launch happened (or the reused task started).
	StartedAt time.Time
}

// Launcher starts and stops per-token workers.
type Launcher interface {
	// Launch starts a worker for req, or returns the live one already
	// running for req.Token.
	Launch(ctx context.Context, req Request) (Task, error)
	// Stop stops task, recording reason where the platform keeps one. A task
	// that is already stopped or unknown is not an error.
	Stop(ctx context.Context, task Task, reason string) error
}

// TaskState is what the platform says of a task a launcher started.
type TaskState struct {
	// Running is true while the task is starting or running.
	Running bool
	// Reason says why a stopped task stopped (ECS stopCode and
	// stoppedReason, a process's exit status); empty while it runs.
	Reason string
}

// Watcher is implemented by launchers that can tell whether a task they
// started is still alive, so the run supervisor can show why a worker died
// before it launches another. Launch must start a new task, not return the
// stopped one, once TaskState says a task stopped.
type Watcher interface {
	// TaskState reports task's state. A task the platform no longer knows
	// is reported stopped, with a reason that says so.
	TaskState(ctx context.Context, task Task) (TaskState, error)
}

// ErrBadRequest is returned (wrapped) when a Request lacks its token or queue.
var ErrBadRequest = errors.New("invalid launch request")

func (r Request) validate() error {
	if r.Token == "" || r.Queue == "" {
		return errors.Join(ErrBadRequest, errors.New("token and queue are required"))
	}
	return nil
}

// expand substitutes {queue} and {token} in each argument.
func expand(args []string, req Request) []string {
	rep := strings.NewReplacer("{queue}", req.Queue, "{token}", req.Token)
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = rep.Replace(a)
	}
	return out
}

// Func is a Launcher made of two functions, for the all-in-one server that
// runs workers in-process.
type Func struct {
	// LaunchFunc starts a worker. Required.
	LaunchFunc func(ctx context.Context, req Request) (Task, error)
	// StopFunc stops it. Nil means stopping is a no-op.
	StopFunc func(ctx context.Context, task Task, reason string) error
}

var _ Launcher = Func{}

// Launch implements Launcher.
func (f Func) Launch(ctx context.Context, req Request) (Task, error) {
	if err := req.validate(); err != nil {
		return Task{}, err
	}
	if f.LaunchFunc == nil {
		return Task{}, errors.New("launch: Func has no LaunchFunc")
	}
	return f.LaunchFunc(ctx, req)
}

// Stop implements Launcher.
func (f Func) Stop(ctx context.Context, task Task, reason string) error {
	if f.StopFunc == nil {
		return nil
	}
	return f.StopFunc(ctx, task, reason)
}
