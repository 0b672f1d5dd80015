// Package sidekiqtest helps the application's tests with Sidekiq: was a
// job enqueued (RequireEnqueued), run one job now through its registered
// handler (WorkOne), and wait for a condition (WaitFor). Its helpers take
// a TestingT, the part of *testing.T they use, so their own failures can
// be tested (as rivertest does).
//
// It imports sidekiq and the standard library only; sidekiq's own tests
// (package sidekiq) cannot import it.
package sidekiqtest

import (
	"context"
	"fmt"
	"time"

	"github.com/pallarel/pallarel/sidekiq"
)

// TestingT is what the helpers need of *testing.T.
type TestingT interface {
	Helper()
	Fatalf(format string, args ...any)
}

// PollInterval is how often WaitFor checks its condition.
const PollInterval = 20 * time.Millisecond

// WaitFor checks cond every PollInterval until it holds, and fails t
// (Fatalf) when it still does not after d.
func WaitFor(t TestingT, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
			return
		}
		<-tick.C
	}
}

// scanLimit bounds how many jobs of a queue RequireEnqueued reads.
const scanLimit = 10000

// RequireEnqueued returns the first job of class waiting in queue (by
// Sidekiq's class, or ActiveJob's wrapped class), and fails t when there is
// none.
func RequireEnqueued(ctx context.Context, t TestingT, api *sidekiq.API, queue, class string) *sidekiq.Job {
	t.Helper()
	entries, err := api.QueueJobs(ctx, queue, 0, scanLimit)
	if err != nil {
		t.Fatalf("sidekiqtest: read queue %s: %v", queue, err)
		return nil
	}
	var seen []string
	for _, e := range entries {
		if e.Job == nil {
			continue
		}
		if e.Job.HandlerClass() == class {
			return e.Job
		}
		seen = append(seen, e.Job.HandlerClass())
	}
	t.Fatalf("sidekiqtest: no %s enqueued on %s (it holds %d jobs: %v)", class, queue, len(entries), seen)
	return nil
}

// WorkOne runs job now through the handler reg has for its class, in this
// goroutine, and returns the handler's error. It fails t when no handler
// is registered. Middleware, retries and acknowledgement are the server's
// and are not run: this tests the handler.
func WorkOne(ctx context.Context, t TestingT, reg *sidekiq.Registry, job *sidekiq.Job) error {
	t.Helper()
	h, ok := reg.Lookup(job.HandlerClass())
	if !ok {
		t.Fatalf("sidekiqtest: no handler registered for %s", job.HandlerClass())
		return fmt.Errorf("sidekiqtest: no handler for %s", job.HandlerClass())
	}
	return h(ctx, job)
}
