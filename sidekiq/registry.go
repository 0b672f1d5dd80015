package sidekiq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// Handler runs one job. Its ctx is cancelled when the server shuts down and
// the job's time is up; a handler should return promptly then, and the job
// is given back to its queue.
type Handler func(ctx context.Context, job *Job) error

// ErrUnknownClass marks a job whose class has no registered handler. Such a
// job fails with error_class NameError and is retried like any failure, as
// Ruby's const_get error is (dropped when the job has no "retry").
var ErrUnknownClass = errors.New("no handler registered for job class")

// Registry maps job class names (as Ruby writes them) to Go handlers. It
// replaces Ruby's Object.const_get(job["class"]): only registered classes run.
type Registry struct {
	mu       sync.RWMutex
	handlers map[string]Handler
	quiet    map[string]bool
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{handlers: map[string]Handler{}, quiet: map[string]bool{}}
}

// LogQuietly makes the server log each job of these classes at DEBUG
// rather than Sidekiq's INFO line per job, with one INFO summary per
// queue every SummaryInterval and at stop. For classes that run by the
// hundred thousand (a CSV's row jobs), whose per-job lines would drown
// every other line.
func (r *Registry) LogQuietly(classes ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range classes {
		r.quiet[c] = true
	}
}

// Quiet reports whether class was named in LogQuietly.
func (r *Registry) Quiet(class string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.quiet[class]
}

// Register binds class (and any alias names) to h. Registering a name twice
// is an error, so two packages cannot silently fight over a class.
func (r *Registry) Register(h Handler, class string, aliases ...string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, name := range append([]string{class}, aliases...) {
		if name == "" {
			return errors.New("register: empty class name")
		}
		if _, dup := r.handlers[name]; dup {
			return fmt.Errorf("register %s: already registered", name)
		}
	}
	for _, name := range append([]string{class}, aliases...) {
		r.handlers[name] = h
	}
	return nil
}

// Lookup returns the handler for class.
func (r *Registry) Lookup(class string) (Handler, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h, ok := r.handlers[class]
	return h, ok
}

// ScanArgs decodes the handler's arguments (see Arguments) into dst, one
// pointer per position. Every position must be present; use ScanArgsMin
// for trailing optional arguments. A mismatch wraps ErrBadArgs.
func (j *Job) ScanArgs(dst ...any) error { return j.ScanArgsMin(len(dst), dst...) }

// ScanArgsMin is ScanArgs where only the first min positions are required;
// absent trailing arguments leave their destinations untouched.
func (j *Job) ScanArgsMin(min int, dst ...any) error {
	args, err := j.Arguments()
	if err != nil {
		return err
	}
	if len(args) < min || len(args) > len(dst) {
		if min == len(dst) {
			return fmt.Errorf("%w: %s wants %d arguments, got %d", ErrBadArgs, j.HandlerClass(), min, len(args))
		}
		return fmt.Errorf("%w: %s wants %d to %d arguments, got %d", ErrBadArgs, j.HandlerClass(), min, len(dst), len(args))
	}
	for i, a := range args {
		if err := json.Unmarshal(a, dst[i]); err != nil {
			return fmt.Errorf("%w: %s argument %d: %v", ErrBadArgs, j.HandlerClass(), i, err)
		}
	}
	return nil
}

// Handler outcomes beyond success and a plain error (which retries).
var (
	// ErrKill sends the job straight to the dead set.
	ErrKill = errors.New("kill job")
	// ErrDiscard drops the job: no retry, no dead set.
	ErrDiscard = errors.New("discard job")
)

// Kill wraps err so that the job goes to the dead set without retrying.
// The error's message is kept as it is for error_message.
func Kill(err error) error { return outcome{err: err, kind: ErrKill} }

// Discard wraps err so that the job is dropped without retrying.
func Discard(err error) error { return outcome{err: err, kind: ErrDiscard} }

// outcome marks an error with a handler outcome without changing its text.
type outcome struct {
	err  error
	kind error
}

func (o outcome) Error() string   { return o.err.Error() }
func (o outcome) Unwrap() []error { return []error{o.err, o.kind} }

// ServerMiddleware wraps the running of a job, as Sidekiq's server
// middleware chain does. It calls next to go on; an error stops the job.
type ServerMiddleware func(ctx context.Context, job *Job, next func(context.Context) error) error

// ClientMiddleware sees every job before it is pushed. It may change the
// job, return an error to refuse it, or return ErrSkipPush to drop it
// silently (Sidekiq's "return false" from client middleware).
type ClientMiddleware func(ctx context.Context, job *Job) error

// ErrSkipPush, returned by a client middleware, drops the job without error.
var ErrSkipPush = errors.New("push skipped by middleware")

// DeathHandler is told about a job that failed for good, with its last error.
type DeathHandler func(ctx context.Context, job *Job, err error)
