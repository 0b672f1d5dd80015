// Package fleet decides how many token workers run, and for which run. It
// wraps the launcher (ECS tasks, local processes, in-process workers):
//   - at most MaxWorkers token workers in total and MaxPerRun for one run,
//     counted across every process that launches (the slots are in Redis);
//   - a run whose first worker does not fit waits its turn, in arrival
//     order, and says how many runs are ahead ("waiting for a worker (2
//     ahead)"); the run supervisor asks again every pass;
//   - with a Target duration, a run gets as many workers as it needs to
//     finish by it, from its size and its measured rate, more while it runs
//     behind and fewer as its queue drains (Scale, from the supervisor).
//
// A slot is freed when its worker is stopped through the fleet, or when the
// launcher reports its task stopped (workers also end themselves: idle, or
// their run's finalizer).
package fleet

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/launcher"
)

// Config sets the caps and the target.
type Config struct {
	// MaxWorkers caps token workers in total (MAX_TOKEN_WORKERS); 0 means
	// no cap.
	MaxWorkers int
	// MaxPerRun caps the workers of one run (MAX_WORKERS_PER_RUN).
	// Defaults to 1: one worker per run, as the Rails app.
	MaxPerRun int
	// Target is how long a run should take (RUN_TARGET_DURATION); 0 keeps
	// one worker per run. With it, a run gets up to MaxPerRun workers.
	Target time.Duration
	// WorkerConcurrency is the rows one worker runs at once, to stop the
	// workers a draining queue no longer feeds. Defaults to 10.
	WorkerConcurrency int
	// WaitStale is how long a waiting run may go without asking before it
	// leaves the queue (it ended). Defaults to a minute.
	WaitStale time.Duration
	// PendingTTL is how long a reservation may wait for its launch to
	// report. Defaults to 10 minutes.
	PendingTTL time.Duration
	// ReconcileEvery spaces the checks of every slot's task state (the
	// platform's API is rate limited). Defaults to 10 s.
	ReconcileEvery time.Duration
	// MinMeasure is how long a run's rate is measured before it is scaled.
	// Defaults to 3 s.
	MinMeasure time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
}

func (c Config) withDefaults() Config {
	c.MaxPerRun = max(c.MaxPerRun, 1)
	if c.MaxWorkers > 0 {
		c.MaxPerRun = min(c.MaxPerRun, c.MaxWorkers)
	}
	c.WorkerConcurrency = cmp.Or(c.WorkerConcurrency, 10)
	c.WaitStale = cmp.Or(c.WaitStale, time.Minute)
	c.PendingTTL = cmp.Or(c.PendingTTL, 10*time.Minute)
	c.ReconcileEvery = cmp.Or(c.ReconcileEvery, 10*time.Second)
	c.MinMeasure = cmp.Or(c.MinMeasure, 3*time.Second)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate names every bad field.
func (c Config) Validate() error {
	var errs []error
	if c.MaxWorkers < 0 || c.MaxPerRun < 0 || c.Target < 0 {
		errs = append(errs, errors.New("fleet: caps and target must not be negative"))
	}
	return errors.Join(errs...)
}

// Fleet is a launcher.Launcher that caps and sizes the workers of inner.
type Fleet struct {
	inner launcher.Launcher
	pool  *redis.Pool
	cfg   Config
	log   *slog.Logger
	now   func() time.Time

	mu            sync.Mutex
	lastReconcile time.Time
	meters        map[string]*meter
	stopping      map[string]bool // task IDs being stopped by Scale
	wg            sync.WaitGroup
}

var (
	_ launcher.Launcher  = (*Fleet)(nil)
	_ launcher.Watcher   = (*Fleet)(nil)
	_ launcher.Scaler    = (*Fleet)(nil)
	_ launcher.Unwrapper = (*Fleet)(nil)
	_ launcher.Queuer    = (*Fleet)(nil)
)

// New wraps inner. pool is the Redis every launching process shares.
func New(inner launcher.Launcher, pool *redis.Pool, cfg Config) (*Fleet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if inner == nil || pool == nil {
		return nil, errors.New("fleet: a launcher and a Redis pool are required")
	}
	cfg = cfg.withDefaults()
	return &Fleet{inner: inner, pool: pool, cfg: cfg, log: cfg.Logger, now: cfg.Now,
		meters: map[string]*meter{}, stopping: map[string]bool{}}, nil
}

// Unwrap implements launcher.Unwrapper.
func (f *Fleet) Unwrap() launcher.Launcher { return f.inner }

// Close waits for the stops Scale started.
func (f *Fleet) Close() { f.wg.Wait() }

func newID() string {
	var b [6]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Launch implements launcher.Launcher. A run that already has a live
// worker gets it back (unless req.Extra); otherwise a slot is taken, or
// the run waits its turn: a *launcher.WaitError says how many runs are
// ahead.
func (f *Fleet) Launch(ctx context.Context, req launcher.Request) (launcher.Task, error) {
	mine, err := f.reconcileRun(ctx, req.Token)
	if err != nil {
		return launcher.Task{}, err
	}
	if len(mine) > 0 && !req.Extra {
		// The inner launcher reuses the token's live worker.
		task, err := f.inner.Launch(ctx, req)
		if err == nil && task.ID != "" && !hasField(mine, task.ID) {
			err = f.bind(ctx, "", task.ID, req.Token)
		}
		return task, err
	}
	fields, ahead, err := f.acquire(ctx, req.Token, 1, req.Extra)
	if err == nil && len(fields) == 0 && f.reconcileDue() {
		// Full: a worker may have ended by itself since; look, then ask again.
		if err = f.reconcileAll(ctx); err == nil {
			fields, ahead, err = f.acquire(ctx, req.Token, 1, req.Extra)
		}
	}
	if err != nil {
		return launcher.Task{}, err
	}
	if len(fields) == 0 {
		return launcher.Task{}, &launcher.WaitError{Ahead: ahead}
	}
	task, err := f.inner.Launch(ctx, req)
	if err != nil || task.ID == "" {
		f.warn(f.release(context.WithoutCancel(ctx), fields[0]), "release a reservation")
		var we *launcher.WaitError
		if errors.As(err, &we) && !req.Extra {
			f.keepTurn(ctx, req.Token)
		}
		return task, err
	}
	return task, f.bind(ctx, fields[0], task.ID, req.Token)
}

// keepTurn puts a run whose launch the platform turned away (capacity,
// quota, throttling) back at the head of the queue.
func (f *Fleet) keepTurn(ctx context.Context, token string) {
	c, err := f.conn(ctx)
	if err != nil {
		return
	}
	defer c.Close()
	c.Send("ZADD", WaitingKey, 1, token)
	c.Send("HSET", AskedKey, token, f.now().UnixMilli())
	_, err = c.Do("")
	f.warn(err, "keep a run's turn")
}

func hasField(ss []slot, field string) bool {
	for _, s := range ss {
		if s.field == field {
			return true
		}
	}
	return false
}

// Stop implements launcher.Launcher and frees the task's slot.
func (f *Fleet) Stop(ctx context.Context, task launcher.Task, reason string) error {
	if err := f.inner.Stop(ctx, task, reason); err != nil {
		return err
	}
	if task.ID == "" {
		return nil
	}
	return f.release(context.WithoutCancel(ctx), task.ID)
}

// TaskState implements launcher.Watcher through the inner launcher.
func (f *Fleet) TaskState(ctx context.Context, task launcher.Task) (launcher.TaskState, error) {
	if w, ok := f.inner.(launcher.Watcher); ok {
		return w.TaskState(ctx, task)
	}
	return launcher.TaskState{Running: true}, nil
}

// Waiting reports whether token's run waits for its first worker, and how
// many runs are ahead of it.
func (f *Fleet) Waiting(ctx context.Context, token string) (ahead int, waiting bool, err error) {
	return f.waitingAhead(ctx, token)
}

// Live returns the task IDs (and reservations) counted against the caps.
func (f *Fleet) Live(ctx context.Context) ([]string, error) {
	ss, err := f.slots(ctx)
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.field)
	}
	return out, err
}

func (f *Fleet) warn(err error, what string) {
	if err != nil {
		f.log.Warn("fleet: "+what, "err", err)
	}
}

func (f *Fleet) reconcileDue() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.now().Sub(f.lastReconcile) < f.cfg.ReconcileEvery {
		return false
	}
	f.lastReconcile = f.now()
	return true
}

// reconcileRun frees the slots of token whose tasks stopped and returns
// the rest.
func (f *Fleet) reconcileRun(ctx context.Context, token string) ([]slot, error) {
	ss, err := f.slots(ctx)
	if err != nil {
		return nil, err
	}
	var mine []slot
	for _, s := range ss {
		if s.token == token {
			mine = append(mine, s)
		}
	}
	return f.dropStopped(ctx, mine)
}

// reconcileAll frees every slot whose task stopped.
func (f *Fleet) reconcileAll(ctx context.Context) error {
	ss, err := f.slots(ctx)
	if err != nil {
		return err
	}
	_, err = f.dropStopped(ctx, ss)
	return err
}

// dropStopped asks the platform about each slot's task, frees those that
// stopped (and reservations past PendingTTL) and returns the others.
func (f *Fleet) dropStopped(ctx context.Context, ss []slot) ([]slot, error) {
	w, _ := f.inner.(launcher.Watcher)
	var live []slot
	var gone []string
	for _, s := range ss {
		if s.pending() {
			if f.now().Sub(time.UnixMilli(s.at)) > f.cfg.PendingTTL {
				gone = append(gone, s.field)
			} else {
				live = append(live, s)
			}
			continue
		}
		if w == nil {
			live = append(live, s)
			continue
		}
		st, err := w.TaskState(ctx, launcher.Task{ID: s.field, StartedAt: time.UnixMilli(s.at)})
		if err != nil {
			live = append(live, s) // unknown: keep counting it
			continue
		}
		if st.Running {
			live = append(live, s)
		} else {
			gone = append(gone, s.field)
		}
	}
	return live, f.release(ctx, gone...)
}
