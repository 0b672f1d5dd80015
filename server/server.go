// Package server is Pallarel's web side (gin): the upload form and the run
// status pages of the Rails app's CsvProcessingController, a download of the
// finished ZIP, health and readiness probes, Prometheus metrics, and a
// Sidekiq dashboard read from the same Redis as Sidekiq's Web UI.
//
// The routes follow the Rails app (see rails-contract.md, "Web"):
//
//	GET  /, /csv_processing/new        upload form (Japanese unless the browser prefers English)
//	POST /csv_processing               upload a CSV, enqueue SplitCsvJob; 303 (browser) or 201 JSON (API)
//	GET  /csv_processing/status        latest runs (?state=, ?page=, ?limit= default 10)
//	GET  /csv_processing/:token        one run, HTML or JSON by Accept
//	GET  /csv_processing/:token/events Server-Sent Events with the run's status every second
//	GET  /csv_processing/:token/download the report ZIP (stream, or 302 to a presigned URL)
//	GET  /csv_processing/:token/failed failed rows with their reasons (?page=)
//	POST /csv_processing/:token/cancel cancel the run; POST .../retry run its failed rows again
//	GET  /up, /healthz, /readyz, /metrics (behind auth, or on its own listener)
//	GET, POST /login; POST /logout     browser session when auth is configured
//	/sidekiq/...                       dashboard: Dashboard, Busy, Queues, Retries, Scheduled, Dead
//
// Nothing here is global: each Server has its own gin engine, templates,
// metrics registry and CSRF key.
package server

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/storage"
)

// DefaultMaxUploadBytes caps an upload when Deps.MaxUploadBytes is zero.
const DefaultMaxUploadBytes int64 = 1 << 30

// Deps is what the web side needs. Pool, Client, API, DB and Store are
// required; the rest have defaults.
type Deps struct {
	Pool   *redis.Pool     // Redis, for /readyz
	Client *sidekiq.Client // pushes SplitCsvJob
	API    *sidekiq.API    // dashboard, metrics
	DB     *models.Store   // client_reports, csv_processing_statuses
	Store  storage.Store   // uploads/, templates/, reports/
	Router router.Router   // token → queue name; the zero value is Rails' 16 hex characters
	Logger *slog.Logger    // defaults to slog.Default()

	// Dialect is the Sidekiq job format written. Defaults to the Client's.
	Dialect sidekiq.Dialect
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time

	// MaxUploadBytes caps a whole upload request. Defaults to 1 GiB.
	MaxUploadBytes int64
	// TemplateLimits bound an uploaded XLSX template (render's defaults for
	// zero fields); one past them is refused at upload.
	TemplateLimits render.TemplateLimits
	// ReadTimeout bounds reading one request, body included, so it must fit
	// the largest upload on the slowest link. Defaults to 30 minutes.
	ReadTimeout time.Duration
	// EventInterval is how often the events stream sends the status.
	// Defaults to 1 second.
	EventInterval time.Duration

	// AuthToken, when set, is accepted as "Authorization: Bearer <token>".
	// BasicUser/BasicPassword, when set, are accepted as basic auth. When
	// any is set, every page but /up, /healthz, /readyz and /metrics needs
	// one of them; when none is set, nothing is protected (local default).
	AuthToken     string
	BasicUser     string
	BasicPassword string
	// AllowedHosts (ALLOWED_HOSTS) are the Host names the server answers
	// besides loopback ones, as Rails' config.hosts: "app.example.com", or
	// ".example.com" for it and its subdomains. With auth and none listed,
	// any Host is answered; without auth, only loopback and these (hosts.go).
	AllowedHosts []string
	// TrustedProxies (TRUSTED_PROXIES) are the proxies whose
	// X-Forwarded-Proto and X-Forwarded-For are believed; none by default.
	TrustedProxies []netip.Prefix

	// Runs cancels runs, retries their failed rows and lists those
	// (the run pipeline). Without it the run pages have no such buttons.
	Runs RunControl

	// CSRFKey signs the forms' CSRF tokens and browser sessions. Defaults
	// to random bytes per Server; set the same key on every replica behind
	// one load balancer (SECRET_KEY_BASE).
	CSRFKey []byte

	// MaxFormBytes caps the body of every request but an upload. Defaults
	// to 1 MiB.
	MaxFormBytes int64
	// MinUploadRate is the slowest upload accepted, in bytes per second
	// averaged over UploadRateWindow: a slower one is cut off with 408, so a
	// trickle cannot hold a connection for ReadTimeout. Defaults to
	// 16 KiB/s; negative turns the check off.
	MinUploadRate int64
	// UploadRateWindow is the period MinUploadRate is measured over.
	// Defaults to 30 seconds.
	UploadRateWindow time.Duration
	// RetainRuns is RETAIN_RUNS, how long an ended run's rows are kept: a
	// run page that finds nothing says so. Zero: not said how long.
	RetainRuns time.Duration
	// MaxEventStreams caps the open status streams in total, and
	// StreamsPerClient per client address (429 beyond). Default 1000 and 20.
	MaxEventStreams  int
	StreamsPerClient int
	// MetricsOnOwnListener leaves /metrics off this handler: the caller
	// serves MetricsHandler on a separate, private address.
	MetricsOnOwnListener bool
	// MaskJobArgs shows job arguments on the dashboard as "[masked]".
	MaskJobArgs bool
	// ReportTypes are the report types the workers can render (a PDF
	// without its font is unavailable). Nil accepts every known type.
	ReportTypes []string
}

// Server is the web application. Build it with New.
type Server struct {
	d       Deps
	log     *slog.Logger
	engine  *gin.Engine
	pages   map[string]*template.Template
	metrics *httpMetrics
	reg     *prometheus.Registry
	streams *streamHub
	rates   rateMeter // recent rates of the runs being watched
	shown   shownMemo // the highest percentage shown of each live run
	hosts   hostPolicy
	logins  loginLimiter
}

// New checks deps, fills defaults and builds the routes.
func New(d Deps) (*Server, error) {
	var errs []error
	if d.Pool == nil {
		errs = append(errs, errors.New("server: redis pool is required"))
	}
	if d.Client == nil || d.API == nil {
		errs = append(errs, errors.New("server: sidekiq client and API are required"))
	}
	if d.DB == nil || d.DB.DB == nil {
		errs = append(errs, errors.New("server: database is required"))
	}
	if d.Store == nil {
		errs = append(errs, errors.New("server: storage is required"))
	}
	if d.MaxUploadBytes < 0 {
		errs = append(errs, fmt.Errorf("server: max upload bytes %d is negative", d.MaxUploadBytes))
	}
	if err := d.Router.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("server: %w", err))
	}
	if (d.BasicUser == "") != (d.BasicPassword == "") {
		errs = append(errs, errors.New("server: basic auth needs both user and password"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	d.Logger = cmp.Or(d.Logger, slog.Default())
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Dialect == 0 {
		d.Dialect = d.Client.Dialect()
	}
	d.MaxUploadBytes = cmp.Or(d.MaxUploadBytes, DefaultMaxUploadBytes)
	d.ReadTimeout = cmp.Or(d.ReadTimeout, 30*time.Minute)
	d.EventInterval = cmp.Or(d.EventInterval, time.Second)
	d.MaxFormBytes = cmp.Or(d.MaxFormBytes, DefaultMaxFormBytes)
	d.MinUploadRate = cmp.Or(d.MinUploadRate, 16<<10)
	d.UploadRateWindow = cmp.Or(d.UploadRateWindow, 30*time.Second)
	d.MaxEventStreams = cmp.Or(d.MaxEventStreams, 1000)
	d.StreamsPerClient = cmp.Or(d.StreamsPerClient, 20)
	if len(d.CSRFKey) == 0 {
		d.CSRFKey = make([]byte, 32)
		_, _ = rand.Read(d.CSRFKey)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s := &Server{d: d, log: d.Logger, pages: pages, reg: prometheus.NewRegistry()}
	s.hosts = newHostPolicy(d.AllowedHosts, s.authOn())
	s.streams = newStreamHub(s)
	if s.metrics, err = newHTTPMetrics(s.reg); err != nil {
		return nil, err
	}
	if err := s.reg.Register(&sidekiqCollector{s: s}); err != nil {
		return nil, fmt.Errorf("server: register metrics: %w", err)
	}
	s.engine = s.routes()
	return s, nil
}

// Handler is the whole application as an http.Handler.
func (s *Server) Handler() http.Handler { return s.engine }

// HTTPServer returns an http.Server for addr with timeouts that suit this
// application: a short ReadHeaderTimeout against slow clients, ReadTimeout
// from Deps (uploads can be large), no WriteTimeout because the events
// stream and downloads run long, and a keep-alive IdleTimeout. The caller
// runs ListenAndServe and Shutdown.
func (s *Server) HTTPServer(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       s.d.ReadTimeout,
		WriteTimeout:      0,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// routes builds the engine. Open routes first, then the protected groups.
func (s *Server) routes() *gin.Engine {
	e := gin.New()
	e.HandleMethodNotAllowed = true
	// Client addresses (stream caps, login throttling, logs) come from the
	// connection, or from X-Forwarded-For when a TRUSTED_PROXIES proxy
	// sends it: from anyone else it would let them pick their own.
	proxies := make([]string, 0, len(s.d.TrustedProxies))
	for _, p := range s.d.TrustedProxies {
		proxies = append(proxies, p.String())
	}
	if err := e.SetTrustedProxies(proxies); err != nil {
		s.log.Error("trusted proxies", "err", err)
		_ = e.SetTrustedProxies(nil)
	}
	// Headers first, so even a 413 or a panic carries them; bodies are
	// capped before anything reads them; cross-site writes stop here.
	e.Use(s.recoverer(), s.securityHeaders(), s.metrics.middleware(), s.accessLog(), s.checkHost(),
		s.limitBody(s.d.MaxFormBytes), s.sameOrigin())
	e.NoRoute(func(c *gin.Context) { s.fail(c, errNotFound) })
	e.NoMethod(func(c *gin.Context) { s.fail(c, errMethod) })

	e.GET("/up", s.up)
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	if !s.d.MetricsOnOwnListener {
		// Metrics name queues and counts runs: behind the app's auth.
		e.GET("/metrics", s.requireAuth(), s.metricsHandler())
	}

	e.GET("/login", s.csrfIssue(), s.loginForm)
	e.POST("/login", s.csrfIssue(), s.csrf(), s.login)
	e.POST("/logout", s.csrfIssue(), s.csrf(), s.logout)

	app := e.Group("/", s.requireAuth(), s.csrfIssue())
	app.GET("/", s.newForm)
	app.GET("/csv_processing/new", s.newForm)
	app.POST("/csv_processing", s.upload)
	app.GET("/csv_processing/status", s.statusList)
	app.GET("/csv_processing/:token", s.statusOne)
	app.GET("/csv_processing/:token/events", s.streamSlot(), s.events)
	app.GET("/csv_processing/:token/download", s.download)
	s.runControlRoutes(app)

	s.dashboardRoutes(e.Group("/sidekiq", s.requireAuth(), s.csrfIssue(), s.csrf()))
	return e
}

// MetricsHandler serves /metrics for a listener of its own
// (Deps.MetricsOnOwnListener), without the app's auth.
func (s *Server) MetricsHandler() http.Handler {
	e := gin.New()
	e.Use(s.recoverer())
	e.GET("/metrics", s.metricsHandler())
	return e
}

// recoverer turns a handler panic into a logged 500.
func (s *Server) recoverer() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.fail(c, fmt.Errorf("panic: %v", v))
			}
		}()
		c.Next()
	}
}

// accessLog logs one line per request at debug level, errors at warn.
func (s *Server) accessLog() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		lvl := slog.LevelDebug
		if c.Writer.Status() >= 500 {
			lvl = slog.LevelWarn
		}
		s.log.Log(c.Request.Context(), lvl, "http request", "method", c.Request.Method, "path", c.Request.URL.Path,
			"status", c.Writer.Status(), "elapsed", time.Since(start).Seconds())
	}
}
