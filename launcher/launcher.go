// Package launcher starts and stops the per-token worker that drains a
// report's queue: an ECS Fargate task in production (as the Rails app's
// SplitCsvJob does), a local process in development, an in-process function
// in the all-in-one server, or nothing at all.
package launcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Request says which worker to start.
type Request struct {
	// Token is the report token; one worker per token.
	Token string
	// Queue is the token's Sidekiq queue the worker must listen on.
	Queue string
	// Extra asks for one more worker on the token's queue even when one
	// runs already (a run spread over several workers); without it a
	// live worker of the token is reused.
	Extra bool
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

// WaitError says a worker cannot start now but can later: the caps on
// token workers are reached (Ahead runs wait before this one), or the
// platform has no capacity or quota left after the launcher's retries. The
// run waits its turn; it is not a failed launch.
type WaitError struct {
	// Ahead is how many runs wait before this one; -1 when the wait is
	// the platform's, not the queue's.
	Ahead int
	// Err is the platform's last answer, when it is the cause.
	Err error
}

// WaitingPrefix starts the state reason of a run waiting for a worker.
const WaitingPrefix = "waiting for a worker"

func (w *WaitError) Error() string {
	if w.Err != nil {
		return WaitingPrefix + ": " + w.Err.Error()
	}
	return fmt.Sprintf("%s (%d ahead)", WaitingPrefix, w.Ahead)
}

func (w *WaitError) Unwrap() error { return w.Err }

// Scaler is implemented by a launcher that decides how many workers a run
// gets (launcher/fleet): the run supervisor reports each unfinished run's
// progress to it once a pass.
type Scaler interface {
	Scale(ctx context.Context, p Progress) error
}

// Queuer is implemented by a launcher that makes runs wait their turn for
// a worker (launcher/fleet).
type Queuer interface {
	// Waiting reports whether token's run waits for its first worker and
	// how many runs are ahead of it.
	Waiting(ctx context.Context, token string) (ahead int, waiting bool, err error)
}

// Progress is where a run stands, as the run supervisor sees it.
type Progress struct {
	Token, Queue string
	// Total is the run's row count, 0 while the split has not counted it.
	Total int
	// Done is how many rows are recorded (done or failed).
	Done int
	// Queued is how many jobs wait in the queue's list, not yet fetched.
	Queued int
	// SplitDone says every row has been pushed at least once.
	SplitDone bool
	// StartedAt is when the run started (its first worker's launch).
	StartedAt time.Time
	// FirstWorker is the task the run records as its worker; scaling in
	// never stops it (it may hold the finalizer's stop path).
	FirstWorker string
}

// Unwrapper is implemented by launchers that wrap another.
type Unwrapper interface {
	Unwrap() Launcher
}

// As finds the first launcher in l's chain of wrappers that is a T.
func As[T any](l Launcher) (T, bool) {
	for l != nil {
		if t, ok := l.(T); ok {
			return t, true
		}
		u, ok := l.(Unwrapper)
		if !ok {
			break
		}
		l = u.Unwrap()
	}
	var zero T
	return zero, false
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
	// StateFunc tells whether a task still runs. Nil: every task is
	// reported running (the caps then count a worker until it is stopped
	// through this launcher).
	StateFunc func(ctx context.Context, task Task) (TaskState, error)
}

var (
	_ Launcher = Func{}
	_ Watcher  = Func{}
)

// TaskState implements Watcher.
func (f Func) TaskState(ctx context.Context, task Task) (TaskState, error) {
	if f.StateFunc == nil {
		return TaskState{Running: true}, nil
	}
	return f.StateFunc(ctx, task)
}

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
