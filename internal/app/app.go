// Package app wires Pallarel's parts from a config.Config: Redis (or an
// embedded Redis-protocol server in the all-in-one mode), the database,
// storage, the launcher, the Sidekiq client and API, and the job pipeline.
// Only the binaries in cmd/ use it.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
	"gorm.io/gorm"

	"github.com/pallarel/pallarel/config"
	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/egress"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/launcher/fleet"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/storage"
)

// Options are what the binaries decide beyond the environment.
type Options struct {
	// Pool, when set, is used instead of opening one from REDIS_URL.
	Pool *redis.Pool
	// PoolSize is the idle connections kept; default 20.
	PoolSize int
	// Launcher, when set, replaces the one LAUNCHER selects (the
	// all-in-one server runs token workers in-process).
	Launcher launcher.Launcher
	// WorkerCommand is the command the local launcher runs for a token;
	// default: the worker binary next to this one.
	WorkerCommand []string
	// ClientMiddleware runs on every job this process pushes (the web
	// server's uploads, the pipeline's own jobs), before the pipeline's
	// queue isolation check, as Sidekiq's client_middleware does.
	ClientMiddleware []sidekiq.ClientMiddleware
}

// App holds the wired parts; Close releases them.
type App struct {
	Config    config.Config
	Log       *slog.Logger
	RedisURL  string
	Pool      *redis.Pool
	GormDB    *gorm.DB
	Models    *models.Store
	Store     storage.Store
	Launcher  launcher.Launcher
	Client    *sidekiq.Client
	API       *sidekiq.API
	Router    router.Router
	Renderers *render.Registry
	Pipeline  *jobs.Pipeline
	Dialect   sidekiq.Dialect

	closers []func() error
}

// Open wires everything from cfg; on error it returns the error and leaves
// nothing open.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger, opts Options) (*App, error) {
	a := &App{Config: cfg, Log: log}
	if err := a.open(ctx, opts); err != nil {
		if cerr := a.Close(); cerr != nil {
			log.Warn("release what a failed start opened", "err", cerr)
		}
		return nil, err
	}
	return a, nil
}

func (a *App) open(ctx context.Context, opts Options) (err error) {
	cfg, log := a.Config, a.Log
	if a.Dialect, err = sidekiq.ParseDialect(fmt.Sprint(cfg.SidekiqDialect)); err != nil {
		return fmt.Errorf("SIDEKIQ_DIALECT: %w", err)
	}
	if err := a.openRedis(opts); err != nil {
		return err
	}
	if err := a.openDB(ctx); err != nil {
		return err
	}
	if err := a.openStore(ctx); err != nil {
		return err
	}
	if a.Router, err = router.New(cfg.QueueHexLen); err != nil {
		return fmt.Errorf("QUEUE_HEX_LEN: %w", err)
	}
	a.Renderers = Renderers(cfg.PDFFontPath, log)
	if opts.Launcher != nil {
		a.Launcher = opts.Launcher
	} else if err := a.openLauncher(ctx, opts); err != nil {
		return err
	}
	// Every launcher but none counts its workers against the caps and
	// sizes runs (MAX_TOKEN_WORKERS, RUN_TARGET_DURATION): the slots are
	// in Redis, shared by every process that launches.
	if _, none := a.Launcher.(launcher.Noop); !none {
		fc := cfg.Fleet
		fc.Logger = log
		if cfg.Launcher == config.LauncherECS {
			fc.WorkerConcurrency = cfg.ECS.WithDefaults().Concurrency
		}
		fl, err := fleet.New(a.Launcher, a.Pool, fc)
		if err != nil {
			return err
		}
		a.Launcher = fl
		a.closers = append(a.closers, func() error { fl.Close(); return nil })
	}
	// In a launched worker (ECS token task, local worker), stopping its
	// own task (the finalizer does) ends this process.
	if self, err := launcher.SelfID(ctx, cfg.Self, nil); err != nil {
		log.Warn("cannot tell which task this worker runs in; stopping it will wait for its idle timeout", "err", err)
	} else if self != "" {
		a.Launcher = launcher.SelfStopping(a.Launcher, self, nil, log)
	}
	// One client for every push from this process. Its last middleware is
	// the pipeline's queue isolation, which needs only the router.
	a.Client = sidekiq.NewClient(a.Pool, sidekiq.ClientOptions{Dialect: a.Dialect,
		Middleware: append(slices.Clip(opts.ClientMiddleware), jobs.Isolation(a.Router))})
	a.API = sidekiq.NewAPI(a.Pool, a.Dialect)
	p, err := jobs.New(jobs.Deps{
		Pool: a.Pool, Client: a.Client, API: a.API, Store: a.Store, DB: a.Models,
		Launcher: a.Launcher, Router: a.Router, Renderers: a.Renderers, Logger: log,
		SplitWindow: cfg.SplitWindow, RowRetries: &cfg.RowJobRetry, RowCells: cfg.RowCells,
		Supervise: jobs.SuperviseConfig{Interval: cfg.SuperviseInterval, LaunchGrace: cfg.WorkerLaunchGrace,
			MaxRelaunches: cfg.WorkerMaxRelaunches},
		WebhookURL: cfg.WebhookURL, WebhookSecret: cfg.WebhookSecret,
		WebhookEgress: egress.Policy{Allow: cfg.WebhookAllow}, WebhookProxy: cfg.WebhookProxy,
		TemplateLimits: cfg.Templates, AppReportsDir: cfg.AppReportsDir,
	})
	if err != nil {
		return err
	}
	a.Pipeline = p
	a.closers = append(a.closers, func() error { p.Close(); return nil })
	return nil
}

// Renderers registers the built-in renderers: xlsx, text, csv, and pdf when
// a CJK font is found (otherwise the upload form offers no PDF, the API
// refuses it, and pdf jobs enqueued by Rails fail with a message naming the
// font paths tried).
func Renderers(fontPath string, log *slog.Logger) *render.Registry {
	reg := render.NewRegistry()
	_ = reg.Register(render.NewXLSX())
	_ = reg.Register(render.Text{})
	_ = reg.Register(render.CSV{})
	if pdf, err := render.NewPDF(render.PDFOptions{FontPath: fontPath}); err == nil {
		_ = reg.Register(pdf)
	} else {
		log.Warn("PDF reports disabled", "err", err)
	}
	return reg
}

func (a *App) openRedis(opts Options) error {
	if opts.Pool != nil {
		a.Pool = opts.Pool
		a.RedisURL = a.Config.RedisURL
		return nil
	}
	url := a.Config.RedisURL
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	pool, err := sidekiq.NewPoolWith(url, a.Config.Redis, max(opts.PoolSize, 20))
	if err != nil {
		return err
	}
	a.Pool, a.RedisURL = pool, url
	a.closers = append(a.closers, pool.Close)
	return nil
}

func (a *App) openDB(ctx context.Context) error {
	db, err := models.Open(ctx, a.Config.DB) // makes a SQLite file's directory
	if err != nil {
		return err
	}
	a.closers = append(a.closers, func() error { return models.Close(db) })
	if err := models.Migrate(ctx, db); err != nil {
		return err
	}
	a.GormDB, a.Models = db, models.NewStore(db)
	return nil
}

func (a *App) openStore(ctx context.Context) error {
	if a.Config.LocalSave {
		st, err := storage.NewLocal(a.Config.StorageDir)
		if err != nil {
			return fmt.Errorf("STORAGE_DIR: %w", err)
		}
		// Row files are intermediate: the ZIP made from them is synced.
		st.NoSyncPrefixes = []string{contract.RowKeyPrefix("")}
		a.Store = st
		return nil
	}
	client, err := storage.NewS3Client(ctx, a.Config.S3Client)
	if err != nil {
		return err
	}
	s3cfg := a.Config.S3
	// A presigned download names the ZIP as the server's local download does.
	s3cfg.DownloadName = func(key string) string {
		if name, ok := strings.CutPrefix(key, "reports/"); ok && strings.HasSuffix(name, ".zip") {
			return "report-" + name
		}
		return ""
	}
	st, err := storage.NewS3(s3cfg, client)
	if err != nil {
		return err
	}
	a.Store = st
	return nil
}

func (a *App) openLauncher(ctx context.Context, opts Options) error {
	switch a.Config.Launcher {
	case config.LauncherECS:
		client, err := launcher.NewECSClient(ctx, a.Config.Region, a.Config.ECSEndpoint, a.Config.ECS.MaxAttempts)
		if err != nil {
			return err
		}
		l, err := launcher.NewECS(a.Config.ECS, client)
		if err != nil {
			return err
		}
		a.Launcher = l
	case config.LauncherLocal:
		cmd := opts.WorkerCommand
		if len(cmd) == 0 {
			cmd = a.Config.LocalWorkerCommand
		}
		if len(cmd) == 0 {
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("local launcher: %w", err)
			}
			cmd = []string{filepath.Join(filepath.Dir(exe), "worker"), "-q", "{queue}", "-c", strconv.Itoa(launcher.DefaultConcurrency),
				"--idle-timeout", a.Config.WorkerIdleTimeout.String()}
		}
		l, err := launcher.NewLocal(launcher.LocalConfig{Command: cmd, Env: []string{"REDIS_URL=" + a.RedisURL}, Logger: a.Log,
			Detach: a.Config.LocalDetach})
		if err != nil {
			return err
		}
		a.Launcher = l
		a.closers = append(a.closers, l.Close)
	default:
		a.Launcher = launcher.Noop{Logger: a.Log, Now: time.Now}
	}
	return nil
}

// Close releases everything Open opened, last first.
func (a *App) Close() error {
	if a == nil {
		return nil
	}
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	a.closers = nil
	return errors.Join(errs...)
}
