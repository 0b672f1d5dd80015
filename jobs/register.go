package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/egress"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/ledger"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/run/counts"
	"github.com/pallarel/pallarel/run/dataloss"
	"github.com/pallarel/pallarel/run/lease"
	"github.com/pallarel/pallarel/run/monitor"
	"github.com/pallarel/pallarel/run/retry"
	"github.com/pallarel/pallarel/run/webhook"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/storage"
)

// Deps is what the jobs need. Every field is required but Logger and Now.
type Deps struct {
	Pool      *redis.Pool
	Client    *sidekiq.Client
	API       *sidekiq.API
	Store     storage.Store
	DB        *models.Store
	Launcher  launcher.Launcher
	Router    router.Router
	Renderers *render.Registry
	Logger    *slog.Logger
	Now       func() time.Time

	// FinalizeInterval is how often Finalize checks for completion (the
	// Rails default is 10 s); MaxWait is how long it waits at most (12 h).
	FinalizeInterval time.Duration
	MaxWait          time.Duration
	// BatchSize is how many row jobs go in one pipelined push.
	BatchSize int
	// SplitWindow is how many row jobs of one run may wait in Redis at
	// once. Defaults to DefaultSplitWindow.
	SplitWindow int
	// RowRetries is the row job's `retry` (ROW_JOB_RETRY): how many times
	// Sidekiq retries a failed row before it is dead and recorded as a
	// failed row. Nil means 3, the Rails job's sidekiq_options.
	RowRetries *int
	// Supervise tunes the run supervisor; zero fields take defaults.
	Supervise SuperviseConfig
	// WebhookURL (WEBHOOK_URL) is called when a run ends, unless the upload
	// gave its own; WebhookSecret (WEBHOOK_SECRET) signs the deliveries.
	// Both optional (webhook.go).
	WebhookURL    string
	WebhookSecret string
	// WebhookEgress decides which addresses deliveries may reach
	// (WEBHOOK_ALLOW_CIDRS); the zero policy allows public addresses only.
	WebhookEgress egress.Policy
	// WebhookProxy (WEBHOOK_PROXY) carries the deliveries; nil: none.
	WebhookProxy *url.URL
	// RowCells (ROW_CELLS) says whether row jobs carry the row's cells or a
	// reference to it in the stored upload: RowCellsAuto (the default),
	// RowCellsRef or RowCellsInline (rowref.go).
	RowCells string
	// TemplateLimits bound an XLSX template a run names (zero fields: render's defaults).
	TemplateLimits render.TemplateLimits
	// AppReportsDir (APP_REPORTS_DIR) is where this process sees the Rails
	// app's worker-local /tmp/reports, shared with Ruby workers of the same
	// runs (appdir.go). Empty: Go never touches it.
	AppReportsDir string
}

// Pipeline runs the jobs with their dependencies.
type Pipeline struct {
	d         Deps
	ledger    ledger.Ledger
	log       *slog.Logger
	templates templateCache
	headers   headerCache     // uploads' header rows, for row references
	counts    *counts.Counter // done_count and failed_count, coalesced
	packer    *ledger.Packer
	feeds     feeders
	leases    *lease.Holder // this process's feeder and supervisor leases
	lost      dataloss.Reader
	super     supervisor
	procs     procsCache // live processes, for runBooks
	// base outlives jobs: the feeders run under it until Close.
	base       context.Context
	cancelBase context.CancelFunc
	queueMemo  queueCache // the last token's queue (tokenQueue)
	hooks      *webhook.Notifier
	monitors   *monitor.Monitors
	retry      *retry.Retrier
}

// New checks deps and fills defaults.
func New(d Deps) (*Pipeline, error) {
	var errs []error
	if d.Pool == nil || d.Client == nil || d.API == nil {
		errs = append(errs, errors.New("jobs: redis pool, client and API are required"))
	}
	if d.Store == nil {
		errs = append(errs, errors.New("jobs: storage is required"))
	}
	if d.DB == nil {
		errs = append(errs, errors.New("jobs: database is required"))
	}
	if d.Launcher == nil {
		errs = append(errs, errors.New("jobs: launcher is required (use launcher.Noop)"))
	}
	if d.Renderers == nil {
		errs = append(errs, errors.New("jobs: renderer registry is required"))
	}
	if !ValidRowCells(d.RowCells) {
		errs = append(errs, fmt.Errorf("jobs: row cells %q: want %s, %s or %s", d.RowCells, RowCellsAuto, RowCellsRef, RowCellsInline))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.FinalizeInterval <= 0 {
		d.FinalizeInterval = 10 * time.Second
	}
	if d.MaxWait <= 0 {
		d.MaxWait = 12 * time.Hour
	}
	if d.BatchSize <= 0 {
		d.BatchSize = 1000
	}
	if d.SplitWindow <= 0 {
		d.SplitWindow = DefaultSplitWindow
	}
	d.Supervise = d.Supervise.withDefaults()
	rows := ledger.Ledger{Pool: d.Pool, Store: d.Store}
	base, cancel := context.WithCancel(context.Background())
	p := &Pipeline{d: d, ledger: rows, log: d.Logger, packer: ledger.NewPacker(d.Store, rows),
		base: base, cancelBase: cancel}
	p.leases = lease.New(d.Pool, router.NewToken())
	p.lost = dataloss.New(d.Pool)
	p.counts = counts.New(counts.Params{Writer: d.DB, Logger: p.log, Now: d.Now})
	hooks, err := p.newNotifier()
	if err != nil {
		cancel()
		return nil, err
	}
	p.hooks = hooks
	if p.monitors, err = monitor.New(monitor.Params{Runs: d.DB, Launcher: d.Launcher, API: d.API,
		DeadRows: p.RecordDeadRows, Logger: p.log, Now: d.Now}); err != nil {
		cancel()
		return nil, err
	}
	if p.retry, err = p.newRetrier(); err != nil {
		cancel()
		return nil, err
	}
	return p, nil
}

// Close stops the goroutines the pipeline owns and waits for them, in this
// order: the feeders are cancelled and joined first, since they record
// rows through the packer (senders before receivers), then the packer's
// handed-off commits are joined, and last the row counts still held back
// are written and their timers joined. Call it after the worker pools that run the pipeline's jobs
// have stopped, and before the pool and database close.
func (p *Pipeline) Close() {
	p.cancelBase()
	p.feeds.stop()
	p.packer.Wait()
	p.counts.Close()
}

// Register binds the six job classes to reg under their wire names and,
// so Go callers may use them too, the names without the Report:: prefix.
func (p *Pipeline) Register(reg *sidekiq.Registry) error {
	// Row jobs run by the hundred thousand: per-job lines at DEBUG and a
	// per-queue (per-run) summary at INFO; the others log Sidekiq's line.
	reg.LogQuietly(contract.Row.Name, "ProcessCsvRowJob")
	return errors.Join(
		reg.Register(p.handleSplit, contract.Split.Name),
		reg.Register(p.handleRow, contract.Row.Name, "ProcessCsvRowJob"),
		reg.Register(p.handleFinalize, contract.Finalize.Name, "FinalizeReportJob"),
		reg.Register(p.handleIdle, contract.Idle.Name),
		reg.Register(p.hooks.Deliver, contract.Webhook.Name),
		reg.Register(p.handleCancelCleanup, contract.CancelCleanup.Name),
		p.monitors.Register(reg),
	)
}

// ServerOptions adds the pipeline's middleware and death handler to a
// worker's options: queue isolation at push and at run, and failed rows
// recorded when a row job dies.
func (p *Pipeline) ServerOptions(o *sidekiq.Options) {
	o.ServerMiddleware = append(o.ServerMiddleware, p.isolationServer)
	o.ClientMiddleware = append(o.ClientMiddleware, p.IsolationClient)
	o.DeathHandlers = append(o.DeathHandlers, p.rowDied, p.jobDied)
}

// tokenQueue is the token's queue, after checking the token.
func (p *Pipeline) tokenQueue(token string) (string, error) { return p.queueMemo.of(p.d.Router, token) }

// queueCache remembers the last token's queue: a run's rows come one after
// another, so its token's SHA-1 is taken once, not three times a row.
type queueCache struct {
	last atomic.Pointer[tokenQueueMemo]
}

func (c *queueCache) of(rt router.Router, token string) (string, error) {
	if m := c.last.Load(); m != nil && m.token == token {
		return m.queue, nil
	}
	q, err := rt.For(token)
	if err != nil {
		return "", fmt.Errorf("%w: %v", sidekiq.ErrBadArgs, err)
	}
	c.last.Store(&tokenQueueMemo{token: token, queue: q})
	return q, nil
}

// tokenQueueMemo is one token and its queue.
type tokenQueueMemo struct{ token, queue string }

// IsolationClient refuses to push a row or finalize job anywhere but its
// token's queue: the isolation the Rails app meant to enforce (its
// middleware keyed on the wrong class name and never fired).
func (p *Pipeline) IsolationClient(ctx context.Context, job *sidekiq.Job) error {
	return checkIsolation(p.tokenQueue, job)
}

// Isolation is IsolationClient for a client built before the pipeline: it
// needs only the router.
func Isolation(rt router.Router) sidekiq.ClientMiddleware {
	var c queueCache
	queueOf := func(token string) (string, error) { return c.of(rt, token) }
	return func(ctx context.Context, job *sidekiq.Job) error { return checkIsolation(queueOf, job) }
}

func (p *Pipeline) isolationServer(ctx context.Context, job *sidekiq.Job, next func(context.Context) error) error {
	if err := checkIsolation(p.tokenQueue, job); err != nil {
		return sidekiq.Kill(err)
	}
	return next(ctx)
}

// checkIsolation checks a row or finalize job is on its token's queue, as
// queueOf names it.
func checkIsolation(queueOf func(token string) (string, error), job *sidekiq.Job) error {
	tokenPos, ok := contract.TokenPos(job.HandlerClass())
	if !ok {
		return nil
	}
	args, err := job.Arguments()
	if err != nil {
		return err
	}
	if len(args) <= tokenPos {
		return fmt.Errorf("%w: %s needs the token at argument %d", sidekiq.ErrBadArgs, job.HandlerClass(), tokenPos)
	}
	token, plain := plainJSONString(args[tokenPos]) // every row job's: no encoding/json
	if !plain {
		if err := unmarshalArg(args[tokenPos], &token); err != nil {
			return fmt.Errorf("%w: %s token: %v", sidekiq.ErrBadArgs, job.HandlerClass(), err)
		}
	}
	want, err := queueOf(token)
	if err != nil {
		return err
	}
	if job.Queue != want {
		return fmt.Errorf("%w: queue isolation: %s for token %s must run on queue %s, not %q",
			sidekiq.ErrBadArgs, job.HandlerClass(), token, want, job.Queue)
	}
	return nil
}

// warnIf logs a failed write of a run's bookkeeping that the caller does
// not stop for: the run goes on, and the supervisor's next pass mends what
// Redis or the database missed.
func (p *Pipeline) warnIf(err error, what string) {
	if err != nil {
		p.log.Warn("run bookkeeping: "+what+" failed", "err", err)
	}
}
