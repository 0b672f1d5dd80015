// Package servercmd is the body of cmd/server: flags, configuration, the
// all-in-one mode (embedded Redis, in-process workers), the web server and
// its lifetime. It lives apart from package main so end-to-end tests of
// other binaries (cmd/pallarel) can start a real server in-process. The
// all-in-one mode's Redis is package embeddedredis.
package servercmd

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pallarel/pallarel/config"
	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/app"
	"github.com/pallarel/pallarel/internal/logformat"
	"github.com/pallarel/pallarel/internal/servercmd/embeddedredis"
	"github.com/pallarel/pallarel/retention"
	"github.com/pallarel/pallarel/run/monitor"
	"github.com/pallarel/pallarel/run/webhook"
	"github.com/pallarel/pallarel/server"
	"github.com/pallarel/pallarel/sidekiq"
)

// Run starts the server and blocks until ctx ends, then returns the exit
// code: 0 after a clean stop, 1 on a runtime error, 2 on a usage or
// configuration error. ready, when not nil, receives the listening address
// once the server accepts connections (tests listen on port 0); give it a
// buffer of one or read it, since Run waits for the send.
func Run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer, ready chan<- string) int {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "listen address (default :$PORT)")
	workers := fs.Bool("workers", false, "run the report worker and token workers in this process (default: only without REDIS_URL)")
	redisAddr := fs.String("embedded-redis", "127.0.0.1:6390", "address of the embedded Redis (all-in-one mode); port 0 or a busy port: a free port")
	redisBin := fs.String("redis-server", "", `redis-server binary for the embedded Redis (default: redis-server in PATH; "miniredis": in this process, snapshotted to DATA_DIR)`)
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	format, err := logformat.Parse(lookup)
	if err != nil {
		fmt.Fprintf(stderr, "server: %v\n", err)
		return 2
	}
	log := logformat.New(stderr, format, level)
	cfg, err := config.Load(lookup)
	if err != nil {
		logformat.Problem(stderr, format, log, "server: configuration", err)
		return 2
	}
	for _, w := range cfg.Warnings {
		log.Warn("configuration: " + w)
	}
	if err := CheckProductionWeb(cfg); err != nil {
		fmt.Fprintf(stderr, "server: configuration:\n%v\n", err)
		return 2
	}
	allInOne := cfg.RedisURL == ""
	inproc := allInOne || *workers
	// The port is taken before anything else starts (the embedded Redis,
	// workers), so a busy one is said at once, with the setting to change.
	listen := *addr
	if listen == "" {
		listen = cfg.ListenAddr()
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		log.Error("listen", "addr", listen, "err", err)
		fmt.Fprintf(stderr, "server: cannot listen on %s: %v\n  Another program holds the port: stop it, or set PORT (or -addr) to a free one, e.g. PORT=8081.\n", listen, errors.Unwrap(err))
		return 1
	}
	defer ln.Close()
	if allInOne {
		// The embedded Redis starts first and stops last (deferred first):
		// the workers' shutdown still writes to it.
		emb, err := embeddedredis.Start(ctx, embeddedredis.Config{
			Dir: filepath.Join(cfg.DataDir, "redis"), Addr: *redisAddr, Binary: *redisBin, Log: log,
		})
		if err != nil {
			log.Error("start embedded redis", "err", err)
			return 1
		}
		defer emb.Close()
		cfg.RedisURL = emb.URL
	}
	var opts app.Options
	var procs *app.InProcess
	if inproc {
		procs = &app.InProcess{Concurrency: 10, IdleTimeout: cfg.WorkerIdleTimeout, Log: log, PrivateRedis: allInOne}
		if cfg.Launcher != config.LauncherECS {
			opts.Launcher = procs.Launcher()
		}
	}
	a, err := app.Open(ctx, cfg, log, opts)
	if err != nil {
		log.Error("server cannot start", "err", err)
		return 1
	}
	defer a.Close()
	if procs != nil {
		procs.Pool, procs.Dialect = a.Pool, a.Dialect
		procs.SetPipeline(a.Pipeline)
		if err := procs.Start("report", []sidekiq.QueueWeight{{Name: contract.TriggerQueue}, {Name: "default"}}, 0); err != nil {
			log.Error("start report worker", "err", err)
			return 1
		}
		// Webhook deliveries on their own server: a receiver that hangs
		// holds one of its few processors, not the report worker's.
		if err := procs.StartWith("webhook", []sidekiq.QueueWeight{{Name: webhook.Queue}}, 0, webhook.Concurrency); err != nil {
			log.Error("start webhook worker", "err", err)
			procs.Close()
			return 1
		}
		defer procs.Close()
		if opts.Launcher != nil {
			// This process ran the token workers of the runs still
			// unfinished; they died with it: start them again now.
			if _, err := a.Pipeline.ResumeWorkers(ctx); err != nil {
				log.Warn("resume the workers of unfinished runs", "err", err)
			}
		}
		monitors, stop := context.WithCancel(ctx)
		monitorsDone := make(chan struct{})
		go func() {
			defer close(monitorsDone)
			a.Pipeline.RunMonitors(monitors, monitor.Interval)
		}()
		// The monitors use Redis and the database: wait for them before
		// the deferred Close above releases those.
		defer func() { stop(); <-monitorsDone }()
	}
	if procs == nil {
		// Without in-process workers the web server still supervises runs
		// (one supervisor acts at a time), so a run ends even while no
		// report worker is alive.
		supervise, stop := context.WithCancel(ctx)
		superviseDone := make(chan struct{})
		go func() { defer close(superviseDone); a.Pipeline.RunSupervisor(supervise) }()
		defer func() { stop(); <-superviseDone }()
	}
	sweeper, err := retention.New(a.Models, a.Store, retention.Config{Uploads: cfg.RetainUploads, Results: cfg.RetainResults, Runs: cfg.RetainRuns}, log, nil)
	if err != nil {
		log.Error("start retention", "err", err)
		return 1
	}
	sweeping, stopSweeping := context.WithCancel(ctx)
	sweepDone := make(chan struct{})
	go func() { defer close(sweepDone); sweeper.Start(sweeping) }()
	defer func() { stopSweeping(); <-sweepDone }() // before the database closes
	web, err := server.New(webDeps(cfg, a, log))
	if err != nil {
		log.Error("start web server", "err", err)
		return 1
	}
	if !cfg.AuthOn() && !ln.Addr().(*net.TCPAddr).IP.IsLoopback() {
		log.Warn("no auth configured and listening beyond loopback: anyone who reaches this address can see and download every run"+
			" (only loopback Host names, and those ALLOWED_HOSTS lists, are answered)", "addr", ln.Addr().String())
	}
	hs := web.HTTPServer(ln.Addr().String())
	hs.Handler = endStreamsOnShutdown(hs, hs.Handler)
	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(ln) }()
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			log.Error("listen for metrics", "addr", cfg.MetricsAddr, "err", err)
			_ = hs.Close()
			return 1
		}
		ms := &http.Server{Handler: web.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- ms.Serve(mln) }()
		defer ms.Close()
	}
	printWelcome(stdout, ln.Addr().(*net.TCPAddr), a.RedisURL, cfg.SidekiqDialect, allInOne, inproc)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve", "err", err)
			return 1
		}
	}
	log.Info("shutting down")
	shutdown, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	if err := hs.Shutdown(shutdown); err != nil {
		log.Warn("http shutdown", "err", err)
		_ = hs.Close() // no handler may outlive the database closed below
	}
	return 0
}

// ShutdownGrace is how long the web server lets requests finish after
// SIGTERM. It stays below the web task's stopTimeout (deploy/ecs/web.json,
// checked by deploy's tests), so ECS's SIGKILL never cuts a response the
// grace would have let finish.
const ShutdownGrace = 25 * time.Second

// CheckProductionWeb refuses a production web server with auth and no
// SECRET_KEY_BASE: each process would sign sessions and CSRF tokens with
// its own random key, so behind a load balancer a form from one task fails
// on another, and every deploy logs everyone out.
func CheckProductionWeb(cfg config.Config) error {
	if cfg.AppEnv == "production" && cfg.AuthOn() && cfg.SecretKeyBase == "" {
		return errors.New("SECRET_KEY_BASE: required in production when auth is on (AUTH_TOKEN or BASIC_AUTH_*), so every web task signs sessions with the same key (set it from Secrets Manager or SSM)")
	}
	return nil
}

// webDeps maps the configuration onto the web server's dependencies.
func webDeps(cfg config.Config, a *app.App, log *slog.Logger) server.Deps {
	d := server.Deps{
		Pool: a.Pool, Client: a.Client, API: a.API, DB: a.Models, Store: a.Store, Router: a.Router,
		Runs: a.Pipeline, Logger: log, Dialect: a.Dialect, MaxUploadBytes: cfg.MaxUploadBytes,
		AuthToken: cfg.AuthToken, BasicUser: cfg.BasicAuthUser, BasicPassword: cfg.BasicAuthPassword,
		MinUploadRate: cfg.MinUploadRate, MaxEventStreams: cfg.MaxEventStreams, StreamsPerClient: cfg.StreamsPerClient,
		MetricsOnOwnListener: cfg.MetricsAddr != "", MaskJobArgs: cfg.MaskJobArgs,
		ReportTypes: a.Renderers.Names(), TemplateLimits: cfg.Templates, RetainRuns: cfg.RetainRuns,
		AllowedHosts: cfg.AllowedHosts, TrustedProxies: cfg.TrustedProxies,
	}
	if cfg.MinUploadRate == 0 {
		d.MinUploadRate = -1 // MIN_UPLOAD_RATE=0 turns the check off
	}
	if cfg.SecretKeyBase != "" {
		sum := sha256.Sum256([]byte("pallarel web\x00" + cfg.SecretKeyBase))
		d.CSRFKey = sum[:]
	}
	return d
}

// endStreamsOnShutdown ends Server-Sent Events streams (requests that
// accept text/event-stream) as soon as hs starts shutting down: a stream of
// an unfinished run never ends by itself, so Shutdown would otherwise wait
// its whole grace period for it. Other requests (uploads, downloads) keep
// the grace period. EventSource reconnects to whichever server is up next.
func endStreamsOnShutdown(hs *http.Server, h http.Handler) http.Handler {
	stopping, stop := context.WithCancel(context.Background())
	hs.RegisterOnShutdown(stop)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			defer context.AfterFunc(stopping, cancel)()
			r = r.WithContext(ctx)
		}
		h.ServeHTTP(w, r)
	})
}

// rubyWebUI is the banner's command for Ruby's own Sidekiq Web UI: the
// Sidekiq major version that reads what this server writes (dialect), and
// what an older UI gets wrong with the setting that fixes it. (Sidekiq 6.x
// and 7.x read Sidekiq 8's millisecond enqueued_at as seconds: a queue
// latency of about -1.8e12 s.)
func rubyWebUI(redisURL string, dialect int) string {
	line := fmt.Sprintf("  Ruby's Web UI:      REDIS_URL=%s deploy/ruby-web/run --sidekiq %d -p 9292\n", redisURL, dialect)
	switch dialect {
	case 8:
		line += "                      (Sidekiq 8.x; a 6.x or 7.x Web UI misreads Sidekiq 8 data: for one, start this server with SIDEKIQ_DIALECT=6 or 7 and pass --sidekiq 6 or 7)\n"
	case 7:
		line += "                      (Sidekiq 7.x, as SIDEKIQ_DIALECT=7 writes; a 6.x Web UI needs SIDEKIQ_DIALECT=6, an 8.x one the default SIDEKIQ_DIALECT=8)\n"
	default:
		line += fmt.Sprintf("                      (Sidekiq %d.x, as SIDEKIQ_DIALECT=%d writes)\n", dialect, dialect)
	}
	return line + "\n"
}

func printWelcome(w io.Writer, addr *net.TCPAddr, redisURL string, dialect int, allInOne, inproc bool) {
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "localhost"
	}
	base := fmt.Sprintf("http://%s", net.JoinHostPort(host, strconv.Itoa(addr.Port)))
	// Logs keep what stdout shows: a production REDIS_URL's password stays out.
	if u, err := url.Parse(redisURL); err == nil {
		redisURL = u.Redacted()
	}
	fmt.Fprintf(w, "\nPallarel is running.\n  Upload a CSV:       %s/\n  Runs:               %s/csv_processing/status\n  Sidekiq dashboard:  %s/sidekiq\n", base, base, base)
	if allInOne {
		fmt.Fprintf(w, "  All-in-one mode: embedded Redis at %s, SQLite and files in DATA_DIR, workers in this process.\n", redisURL)
	}
	if inproc {
		fmt.Fprintf(w, "  Another worker:     REDIS_URL=%s go run ./cmd/worker -q report -q default\n", redisURL)
		fmt.Fprint(w, rubyWebUI(redisURL, dialect))
	}
}
