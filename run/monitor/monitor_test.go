package monitor_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/models/modelstest"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/run/monitor"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/sidekiq/sidekiqtest"
)

// bundle is one test's monitors on its own Redis database and SQLite
// file, with a launcher that records its stops and fails those asked to.
type bundle struct {
	runs     *models.Store
	m        *monitor.Monitors
	mu       sync.Mutex
	stopped  []string
	failStop map[string]bool
	deadRuns int
}

func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{runs: models.NewStore(modelstest.SQLite(t)), failStop: map[string]bool{}}
	l := &launcher.Func{
		LaunchFunc: func(context.Context, launcher.Request) (launcher.Task, error) {
			return launcher.Task{}, errors.New("no launches here")
		},
		StopFunc: func(_ context.Context, task launcher.Task, _ string) error {
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.failStop[task.ID] {
				return errors.New("StopTask: throttled")
			}
			b.stopped = append(b.stopped, task.ID)
			return nil
		},
	}
	var err error
	b.m, err = monitor.New(monitor.Params{
		Runs: b.runs, Launcher: l, API: sidekiq.NewAPI(redistest.New(t).Pool, sidekiq.Dialect8),
		DeadRows: func(context.Context) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); b.deadRuns++; return 0, nil },
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// run records a run whose worker is task, quiet for an hour.
func (b *bundle) run(t *testing.T, task string) string {
	t.Helper()
	ctx := context.Background()
	token := router.NewToken()
	if _, err := b.runs.CreateStatus(ctx, token, router.QueueName(token), 10); err != nil {
		t.Fatal(err)
	}
	if err := b.runs.RecordWorker(ctx, token, task, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := b.runs.DB.Exec("UPDATE csv_processing_statuses SET updated_at = ? WHERE token = ?", time.Now().Add(-time.Hour), token).Error; err != nil {
		t.Fatal(err)
	}
	return token
}

func (b *bundle) stops() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.stopped)
}

// An idle worker whose stop fails is marked for the force-shutdown
// monitor, which stops it on its next pass and clears the mark; a pass
// after that stops nothing.
func TestForcedStopRetriedOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	token := b.run(t, "task-throttled")
	b.failStop["task-throttled"] = true
	if n, err := b.m.StopIdleWorkers(ctx); err != nil || n != 0 {
		t.Fatalf("StopIdleWorkers with a failing stop: %d %v", n, err)
	}
	st, err := b.runs.StatusByToken(ctx, token)
	if err != nil || st.ForceShutdownAt == nil {
		t.Fatalf("a failed stop leaves force_shutdown_at set: %+v %v", st, err)
	}
	b.m.RetryForcedStops(ctx) // still failing: kept for the next pass
	if st, _ := b.runs.StatusByToken(ctx, token); st.ForceShutdownAt == nil {
		t.Fatal("force_shutdown_at cleared although the stop failed again")
	}
	delete(b.failStop, "task-throttled")
	b.m.RetryForcedStops(ctx)
	if got := b.stops(); !slices.Equal(got, []string{"task-throttled"}) {
		t.Fatalf("stops %v", got)
	}
	if st, _ := b.runs.StatusByToken(ctx, token); st.ForceShutdownAt != nil {
		t.Fatal("force_shutdown_at still set after the stop")
	}
	b.m.RetryForcedStops(ctx)
	if got := b.stops(); len(got) != 1 {
		t.Fatalf("stopped again: %v", got)
	}
}

// The app's three monitor jobs, run by a Go worker, each do their pass:
// the idle-task one stops the quiet worker, the dead-letter one records
// dead rows, the force-shutdown one returns quietly with nothing to do.
func TestAppMonitorJobsDoTheirPass(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.run(t, "task-idle")
	reg := sidekiq.NewRegistry()
	if err := b.m.Register(reg); err != nil {
		t.Fatal(err)
	}
	for _, class := range []string{monitor.IdleEcsTaskClass, monitor.DeadLetterClass, monitor.ForceShutdownClass} {
		j, err := sidekiq.NewActiveJob(sidekiq.Dialect8, class, "default")
		if err != nil {
			t.Fatal(err)
		}
		if err := sidekiqtest.WorkOne(ctx, t, reg, j); err != nil {
			t.Errorf("%s: %v", class, err)
		}
	}
	if got := b.stops(); !slices.Equal(got, []string{"task-idle"}) {
		t.Errorf("IdleEcsTaskMonitorJob stopped %v", got)
	}
	if b.deadRuns != 1 {
		t.Errorf("DeadLetterMonitorJob ran the dead-row pass %d times", b.deadRuns)
	}
}
