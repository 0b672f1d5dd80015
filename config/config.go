// Package config reads Pallarel's settings from the environment, once, in
// main. It fills the config types the other packages own (models.DBConfig,
// storage.S3Config, launcher.ECSConfig) and reports every problem at once.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pallarel/pallarel/internal/egress"
	"github.com/pallarel/pallarel/internal/redisurl"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/launcher/fleet"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/storage"
)

// Launcher kinds (LAUNCHER).
const (
	LauncherECS   = "ecs"
	LauncherLocal = "local"
	LauncherNone  = "none"
)

// Defaults.
const (
	DefaultDataDir           = "./data"
	DefaultRegion            = "ap-northeast-1"
	DefaultPort              = 8080
	DefaultQueueHexLen       = 16
	DefaultMaxUploadBytes    = 1 << 30
	DefaultSidekiqDialect    = 8
	DefaultAppEnv            = "development"
	DefaultWorkerIdleTimeout = 5 * time.Minute
	DefaultMaxEventStreams   = 1000
	DefaultStreamsPerClient  = 20
	DefaultMinUploadRate     = 16 << 10 // bytes per second, averaged over 30 s
	DefaultRetainUploads     = 7 * 24 * time.Hour
	DefaultRetainResults     = 30 * 24 * time.Hour
	DefaultRetainRuns        = 90 * 24 * time.Hour
	sqliteFileName           = "pallarel.sqlite3"
)

// Config is everything main needs to wire the app.
type Config struct {
	// AppEnv is APP_ENV; also the ECS task's Env tag. Defaults to "development".
	AppEnv string
	// Port is PORT, the HTTP listen port. Defaults to 8080.
	Port int
	// RedisURL is REDIS_URL: a redis:// or rediss:// URL, or a bare host
	// as the Rails app's config/redis.yml takes it ("redis",
	// "127.0.0.1:6379"), made redis://<host>/<REDIS_DB> here. Empty lets
	// main pick an embedded/local Redis. REDIS_PROVIDER may name another
	// variable that holds it, as in Sidekiq.
	RedisURL string
	// Redis is the Sentinel and TLS settings (REDIS_SENTINELS,
	// REDIS_TLS_*; see redis.go).
	Redis redisurl.Settings
	// DataDir is DATA_DIR. Defaults to "./data".
	DataDir string
	// DB comes from DATABASE_URL, else DB_HOST/DB_NAME/DB_USER/DB_PASSWORD
	// (MySQL, as the Rails app), else SQLite at DATA_DIR/pallarel.sqlite3.
	DB models.DBConfig
	// LocalSave is LOCAL_SAVE: keep reports on disk instead of S3. As in
	// the Rails app (ENV["LOCAL_SAVE"].blank?), any non-blank value means
	// local, "false" and "0" included (with a warning). Unset or blank
	// means S3 when a bucket is configured, else local.
	LocalSave bool
	// StorageDir is STORAGE_DIR, the Local store root. Defaults to DATA_DIR/storage.
	StorageDir string
	// AppReportsDir is APP_REPORTS_DIR: where this process sees the Rails
	// app's worker-local /tmp/reports, when Ruby workers of the same runs
	// write there too (the same host, or a volume both mount). Go's row
	// jobs then put a copy of each row file there and Go's finalizer zips
	// the app's files it finds. Default: none (Go never touches it).
	AppReportsDir string
	// S3 is the bucket (REPORT_S3_BUCKET_NAME, else AWS_S3_BUCKET).
	S3 storage.S3Config
	// S3Client is AWS_REGION, AWS_ENDPOINT_URL_S3 and S3_FORCE_PATH_STYLE.
	S3Client storage.S3ClientConfig
	// Region is AWS_REGION. Defaults to ap-northeast-1.
	Region string
	// ECSEndpoint is AWS_ENDPOINT_URL_ECS (optional).
	ECSEndpoint string
	// Launcher is LAUNCHER: ecs, local or none. Defaults to ecs when
	// ECS_CLUSTER is set and results go to S3 (LOCAL_SAVE blank), else local.
	Launcher string
	// ECS is the task to run per token (ECS_* variables).
	ECS launcher.ECSConfig
	// LocalDetach is LOCAL_WORKERS_DETACH: let the local launcher's
	// workers outlive this process. Defaults to false (they get SIGTERM
	// when it dies).
	LocalDetach bool
	// Self is how a worker finds the task it runs in
	// (ECS_CONTAINER_METADATA_URI_V4, PALLAREL_LAUNCHED_BY), so the
	// finalizer's stop of that task ends it.
	Self launcher.SelfEnv
	// QueueHexLen is QUEUE_HEX_LEN (1..40). Defaults to 16, as Rails.
	QueueHexLen int
	// MaxUploadBytes is MAX_UPLOAD_BYTES. Defaults to 1 GiB.
	MaxUploadBytes int64
	// AuthToken is AUTH_TOKEN, a bearer token for the API (optional).
	AuthToken string
	// BasicAuthUser and BasicAuthPassword protect the web UI (optional, together).
	BasicAuthUser     string
	BasicAuthPassword string
	// SidekiqDialect is SIDEKIQ_DIALECT: the Sidekiq major version whose
	// Redis format we write (8, 7 or 6; 81 for SIDEKIQ_DIALECT=8.1, whose
	// retry rule and advertised version are 8.1.7's). Defaults to 8.
	SidekiqDialect int
	// Templates bound an uploaded XLSX template: TEMPLATE_MAX_BYTES (10 MiB),
	// TEMPLATE_MAX_UNCOMPRESSED_BYTES (64 MiB), TEMPLATE_MAX_CELLS (200,000)
	// and TEMPLATE_MAX_PLACEHOLDERS (1,000).
	Templates render.TemplateLimits
	// PDFFontPath is PDF_FONT_PATH, a CJK TrueType font for PDF reports.
	// Empty tries Debian's IPA Gothic and other known paths.
	PDFFontPath string
	// BindAddr is BIND_ADDR, the host the web server listens on. Empty
	// means loopback (127.0.0.1) when no auth is configured, so a laptop
	// never serves its runs to the network, and every interface otherwise.
	// Containers set it explicitly (0.0.0.0).
	BindAddr string
	// MetricsAddr is METRICS_ADDR: when set, /metrics is served only on this
	// separate listener (for a scraper on a private network) and without
	// auth; when unset, /metrics is on the main port behind the app's auth.
	MetricsAddr string
	// SecretKeyBase is SECRET_KEY_BASE (as Rails): signs browser sessions
	// and CSRF tokens. Set the same value on every replica; when unset each
	// process picks a random key (sessions end at restart).
	SecretKeyBase string
	// MaxEventStreams is MAX_EVENT_STREAMS, the open status streams the
	// server allows in total. Defaults to 1000.
	MaxEventStreams int
	// StreamsPerClient is MAX_EVENT_STREAMS_PER_CLIENT, per client address.
	// Defaults to 20.
	StreamsPerClient int
	// MinUploadRate is MIN_UPLOAD_RATE in bytes per second: an upload
	// slower than this over 30 s is cut off (408). Defaults to 16 KiB/s.
	MinUploadRate int64
	// MaskJobArgs is DASHBOARD_MASK_ARGS: the /sidekiq dashboard shows job
	// arguments as "[masked]" (they hold customers' personal data).
	MaskJobArgs bool
	// RetainUploads, RetainResults and RetainRuns are RETAIN_UPLOADS (7d),
	// RETAIN_RESULTS (30d) and RETAIN_RUNS (90d): how long an ended run's
	// uploaded CSV and template, its report ZIP, and its database rows are
	// kept. Durations accept a "d" suffix for days.
	RetainUploads, RetainResults, RetainRuns time.Duration
	// WorkerIdleTimeout is WORKER_IDLE_TIMEOUT: how long a token worker
	// waits on an empty queue before it exits. Defaults to 5m.
	WorkerIdleTimeout time.Duration
	// SplitWindow is SPLIT_WINDOW: how many row jobs of one run wait in
	// Redis at most. Defaults to 4000.
	SplitWindow int
	// RowJobRetry is ROW_JOB_RETRY: the row job's Sidekiq `retry`, how
	// many times a failed row is retried before it is recorded as failed.
	// Defaults to 3, as the Rails job.
	RowJobRetry int
	// RowCells is ROW_CELLS: auto, ref or inline: whether row jobs carry
	// the row's cells (the app's row_hash) or a reference to the row in
	// the stored upload. Defaults to auto: references when only Go workers
	// serve the run (not LAUNCHER=none, no Ruby Sidekiq on its queue).
	RowCells string
	// SuperviseInterval is SUPERVISE_INTERVAL: how often the run
	// supervisor reconciles unfinished runs. Defaults to 5s.
	SuperviseInterval time.Duration
	// WorkerLaunchGrace is WORKER_LAUNCH_GRACE: how long a run's queue may
	// hold work with no live worker before the worker is launched again.
	// Defaults to 45s.
	WorkerLaunchGrace time.Duration
	// LocalWorkerCommand is LOCAL_WORKER_COMMAND: the command line (split
	// on spaces, {queue} and {token} substituted) the local launcher runs
	// per token. Defaults to the worker binary beside this one with
	// "-q {queue} -c 10 --idle-timeout WORKER_IDLE_TIMEOUT".
	LocalWorkerCommand []string
	// WorkerMaxRelaunches is WORKER_MAX_RELAUNCHES: relaunches of one
	// run's worker before the run fails. Defaults to 5.
	WorkerMaxRelaunches int
	// Fleet caps and sizes token workers: MAX_TOKEN_WORKERS (in total,
	// default 20, 0 for no cap), MAX_WORKERS_PER_RUN (default 10) and
	// RUN_TARGET_DURATION (default 0: one worker per run).
	Fleet fleet.Config
	// WebhookURL is WEBHOOK_URL: an http(s) URL called once when a run
	// ends, unless the upload gave its own (optional).
	WebhookURL string
	// WebhookSecret is WEBHOOK_SECRET: the key of the deliveries'
	// HMAC-SHA256 signature (optional; unsigned without it).
	WebhookSecret string

	// Warnings are settings that work but probably do not mean what their
	// author thought (LOCAL_SAVE=false); main logs each at WARN.
	Warnings []string
	// WebhookAllow is WEBHOOK_ALLOW_CIDRS: the inward networks (CIDRs or
	// addresses, comma-separated) webhooks may reach although they are
	// loopback, private or link-local; a cloud metadata address must be
	// named alone. Default: none (package egress).
	WebhookAllow []netip.Prefix
	// AllowedHosts is ALLOWED_HOSTS: the Host names the web server answers
	// besides loopback ones (Rails' config.hosts; ".example.com" for a
	// domain and its subdomains). Default: none.
	AllowedHosts []string
	// TrustedProxies is TRUSTED_PROXIES: CIDRs or addresses of the proxies
	// (a TLS-terminating load balancer) whose X-Forwarded-Proto and
	// X-Forwarded-For the web server believes. Default: none.
	TrustedProxies []netip.Prefix
	// WebhookProxy is WEBHOOK_PROXY: an http(s) proxy every delivery goes
	// through. Default: none, whatever HTTP_PROXY says.
	WebhookProxy *url.URL
}

// loader reads variables and collects problems.
type loader struct {
	lookup func(string) (string, bool)
	errs   []error
}

// get returns a variable's trimmed value; empty counts as unset.
func (l *loader) get(name string) (string, bool) {
	v, ok := l.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

func (l *loader) str(name, def string) string {
	if v, ok := l.get(name); ok {
		return v
	}
	return def
}

func (l *loader) fail(name, format string, args ...any) {
	l.errs = append(l.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

// boolean parses true/false/1/0/yes/no (any case).
func (l *loader) boolean(name string) (value, set bool) {
	v, ok := l.get(name)
	if !ok {
		return false, false
	}
	switch strings.ToLower(v) {
	case "true", "1", "yes":
		return true, true
	case "false", "0", "no":
		return false, true
	}
	l.fail(name, "want true/false/1/0/yes/no, got %q", v)
	return false, false
}

func (l *loader) integer(name string, def, lo, hi int64) int64 {
	v, ok := l.get(name)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		l.fail(name, "want an integer, got %q", v)
		return def
	}
	if n < lo || n > hi {
		l.fail(name, "want %d..%d, got %d", lo, hi, n)
		return def
	}
	return n
}

// duration parses a Go duration ("90s", "5m"), whole days ("30d") or
// whole seconds ("300").
func (l *loader) duration(name string, def time.Duration) time.Duration {
	v, ok := l.get(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if days, ok := strings.CutSuffix(v, "d"); ok && err != nil {
		if n, derr := strconv.ParseInt(days, 10, 32); derr == nil {
			d, err = time.Duration(n)*24*time.Hour, nil
		}
	}
	if err != nil {
		secs, serr := strconv.ParseInt(v, 10, 64)
		if serr != nil {
			l.fail(name, "want a duration such as 5m or 300s, got %q", v)
			return def
		}
		d = time.Duration(secs) * time.Second
	}
	if d <= 0 {
		l.fail(name, "want a positive duration, got %q", v)
		return def
	}
	return d
}

// list splits a comma list, dropping blanks.
func (l *loader) list(name string) []string {
	v, _ := l.get(name)
	var out []string
	for _, part := range strings.Split(v, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Load reads the configuration through lookup (os.LookupEnv in main, a map
// in tests). All problems are returned together, joined.
func Load(lookup func(string) (string, bool)) (Config, error) {
	l := &loader{lookup: lookup}
	var c Config

	c.AppEnv = l.str("APP_ENV", DefaultAppEnv)
	c.PDFFontPath = l.str("PDF_FONT_PATH", "")
	c.Port = int(l.integer("PORT", DefaultPort, 1, 65535))
	c.RedisURL = l.redisURL()
	c.RedisURL, c.Redis = l.redisSettings(c.RedisURL) // redisconn.go
	c.DataDir = l.str("DATA_DIR", DefaultDataDir)
	c.DB = l.database(c.DataDir)
	c.DB.MaxOpenConns = int(l.integer("DB_POOL", models.DefaultMaxOpenConns, 1, 1000))
	c.DB.ConnMaxLifetime = l.duration("DB_CONN_MAX_LIFETIME", models.DefaultConnMaxLifetime)

	bucket := l.str("REPORT_S3_BUCKET_NAME", l.str("AWS_S3_BUCKET", ""))
	c.LocalSave = bucket == ""
	if v, set := l.get("LOCAL_SAVE"); set {
		// The Rails app's test is ENV["LOCAL_SAVE"].blank?: "false" is
		// not blank, so it means local there, and so here.
		c.LocalSave = true
		switch strings.ToLower(v) {
		case "false", "0", "no", "off", "n", "f":
			c.Warnings = append(c.Warnings, fmt.Sprintf("LOCAL_SAVE=%s means LOCAL save (reports stay on disk, not S3), as in the Rails app, where any non-blank LOCAL_SAVE is local; unset LOCAL_SAVE (or set it empty) to save to S3", v))
		}
	}
	c.StorageDir = l.str("STORAGE_DIR", filepath.Join(c.DataDir, "storage"))
	if c.AppReportsDir = l.str("APP_REPORTS_DIR", ""); c.AppReportsDir != "" && !filepath.IsAbs(c.AppReportsDir) {
		l.fail("APP_REPORTS_DIR", "want an absolute path (the folder the app's /tmp/reports is seen at)")
	}
	c.S3 = storage.S3Config{Bucket: bucket}

	c.Region = l.str("AWS_REGION", DefaultRegion)
	pathStyle, _ := l.boolean("S3_FORCE_PATH_STYLE")
	c.S3Client = storage.S3ClientConfig{
		Region:       c.Region,
		Endpoint:     l.endpoint("AWS_ENDPOINT_URL_S3"),
		UsePathStyle: pathStyle,
		Checksums:    strings.ToLower(l.str("S3_CHECKSUMS", "")),
	}
	switch c.S3Client.Checksums {
	case "", storage.ChecksumsWhenRequired, storage.ChecksumsWhenSupported:
	default:
		l.fail("S3_CHECKSUMS", "want %s or %s, got %q", storage.ChecksumsWhenRequired, storage.ChecksumsWhenSupported, c.S3Client.Checksums)
	}
	c.ECSEndpoint = l.endpoint("AWS_ENDPOINT_URL_ECS")

	c.ECS = launcher.ECSConfig{
		Cluster:        l.str("ECS_CLUSTER", ""),
		TaskDefinition: l.str("ECS_SIDEKIQ_TASK_DEFINITION", ""),
		Subnets:        l.list("ECS_SIDEKIQ_SUBNET_IDS"),
		SecurityGroups: l.list("ECS_SIDEKIQ_SECURITY_GROUP_IDS"),
		ContainerName:  l.str("ECS_CONTAINER_NAME", launcher.DefaultContainerName),
		Env:            c.AppEnv,
	}
	c.ECS.AssignPublicIP, _ = l.boolean("ECS_ASSIGN_PUBLIC_IP")
	c.ECS.PlatformVersion = l.str("ECS_PLATFORM_VERSION", "")
	c.ECS.PropagateTags, _ = l.boolean("ECS_PROPAGATE_TAGS")
	if v, ok := l.get("ECS_CAPACITY_PROVIDERS"); ok {
		cps, err := launcher.ParseCapacityProviders(v)
		if err != nil {
			l.fail("ECS_CAPACITY_PROVIDERS", "%v", err)
		}
		c.ECS.CapacityProviders = cps
	}
	if v, ok := l.get("ECS_SIDEKIQ_COMMAND"); ok {
		// Only arguments: the task definition's entryPoint is the binary.
		if err := json.Unmarshal([]byte(v), &c.ECS.Command); err != nil || len(c.ECS.Command) == 0 || strings.HasPrefix(c.ECS.Command[0], "/") {
			l.fail("ECS_SIDEKIQ_COMMAND", `want a JSON array of the worker's arguments (the task definition's entryPoint is the binary) such as ["-q","{queue}","-c","{concurrency}"], got %q`, v)
		}
	}
	c.ECS.Concurrency = int(l.integer("ECS_SIDEKIQ_CONCURRENCY", 0, 1, 1000))
	c.LocalDetach, _ = l.boolean("LOCAL_WORKERS_DETACH")
	c.Self = launcher.SelfEnv{
		MetadataURI: l.str("ECS_CONTAINER_METADATA_URI_V4", ""),
		LaunchedBy:  l.str(launcher.LaunchedByEnv, ""),
	}
	defLauncher := LauncherLocal
	if c.ECS.Cluster != "" && !c.LocalSave {
		defLauncher = LauncherECS
	}
	c.Launcher = strings.ToLower(l.str("LAUNCHER", defLauncher))
	switch c.Launcher {
	case LauncherECS:
		for _, req := range []struct {
			name    string
			missing bool
		}{
			{"ECS_CLUSTER", c.ECS.Cluster == ""},
			{"ECS_SIDEKIQ_TASK_DEFINITION", c.ECS.TaskDefinition == ""},
			{"ECS_SIDEKIQ_SUBNET_IDS", len(c.ECS.Subnets) == 0},
			{"ECS_SIDEKIQ_SECURITY_GROUP_IDS", len(c.ECS.SecurityGroups) == 0},
		} {
			if req.missing {
				l.fail(req.name, "required when LAUNCHER is ecs")
			}
		}
	case LauncherLocal, LauncherNone:
	default:
		l.fail("LAUNCHER", "want ecs, local or none, got %q", c.Launcher)
	}

	c.QueueHexLen = int(l.integer("QUEUE_HEX_LEN", DefaultQueueHexLen, 1, 40))
	c.MaxUploadBytes = l.integer("MAX_UPLOAD_BYTES", DefaultMaxUploadBytes, 1, 1<<62)
	c.Templates = render.TemplateLimits{
		MaxBytes:             l.integer("TEMPLATE_MAX_BYTES", render.DefaultTemplateMaxBytes, 1, 1<<31),
		MaxUncompressedBytes: l.integer("TEMPLATE_MAX_UNCOMPRESSED_BYTES", render.DefaultTemplateMaxUncompressedBytes, 1, 1<<34),
		MaxCells:             int(l.integer("TEMPLATE_MAX_CELLS", render.DefaultTemplateMaxCells, 1, 1<<31)),
		MaxPlaceholders:      int(l.integer("TEMPLATE_MAX_PLACEHOLDERS", render.DefaultTemplateMaxPlaceholders, 1, 1<<20)),
	}
	c.AuthToken = l.str("AUTH_TOKEN", "")
	c.BasicAuthUser = l.str("BASIC_AUTH_USER", "")
	c.BasicAuthPassword = l.str("BASIC_AUTH_PASSWORD", "")
	if (c.BasicAuthUser == "") != (c.BasicAuthPassword == "") {
		l.fail("BASIC_AUTH_USER", "BASIC_AUTH_USER and BASIC_AUTH_PASSWORD must be set together")
	}
	c.SidekiqDialect = DefaultSidekiqDialect
	if v, ok := l.get("SIDEKIQ_DIALECT"); ok {
		switch v {
		case "6", "7", "8":
			c.SidekiqDialect = int(v[0] - '0')
		case "8.1":
			c.SidekiqDialect = 81 // sidekiq.Dialect81
		default:
			l.fail("SIDEKIQ_DIALECT", "want 8, 7 or 6, got %q (or 8.1 for Sidekiq 8.1)", v)
		}
	}
	c.WorkerIdleTimeout = l.duration("WORKER_IDLE_TIMEOUT", DefaultWorkerIdleTimeout)
	c.BindAddr = l.str("BIND_ADDR", "")
	if c.BindAddr != "" && net.ParseIP(strings.Trim(c.BindAddr, "[]")) == nil && c.BindAddr != "localhost" {
		l.fail("BIND_ADDR", "want an IP address such as 127.0.0.1 or 0.0.0.0, got %q", c.BindAddr)
	}
	c.MetricsAddr = l.str("METRICS_ADDR", "")
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			l.fail("METRICS_ADDR", "want host:port such as 127.0.0.1:9090, got %q", c.MetricsAddr)
		}
	}
	c.SecretKeyBase = l.str("SECRET_KEY_BASE", "")
	if c.SecretKeyBase != "" && len(c.SecretKeyBase) < 32 {
		l.fail("SECRET_KEY_BASE", "want at least 32 characters")
	}
	c.MaxEventStreams = int(l.integer("MAX_EVENT_STREAMS", DefaultMaxEventStreams, 1, 1_000_000))
	c.StreamsPerClient = int(l.integer("MAX_EVENT_STREAMS_PER_CLIENT", DefaultStreamsPerClient, 1, 1_000_000))
	c.MinUploadRate = l.integer("MIN_UPLOAD_RATE", DefaultMinUploadRate, 0, 1<<40)
	c.MaskJobArgs, _ = l.boolean("DASHBOARD_MASK_ARGS")
	c.RetainUploads = l.duration("RETAIN_UPLOADS", DefaultRetainUploads)
	c.RetainResults = l.duration("RETAIN_RESULTS", DefaultRetainResults)
	c.RetainRuns = l.duration("RETAIN_RUNS", DefaultRetainRuns)
	c.SplitWindow = int(l.integer("SPLIT_WINDOW", 4000, 10, 1_000_000))
	c.RowJobRetry = int(l.integer("ROW_JOB_RETRY", 3, 0, 25))
	c.RowCells = strings.ToLower(l.str("ROW_CELLS", "auto"))
	if c.RowCells != "auto" && c.RowCells != "ref" && c.RowCells != "inline" {
		l.fail("ROW_CELLS", "want auto, ref or inline, got %q", c.RowCells)
	}
	c.SuperviseInterval = l.duration("SUPERVISE_INTERVAL", 5*time.Second)
	c.WorkerLaunchGrace = l.duration("WORKER_LAUNCH_GRACE", 45*time.Second)
	if cmd := strings.Fields(l.str("LOCAL_WORKER_COMMAND", "")); len(cmd) > 0 {
		c.LocalWorkerCommand = cmd
	}
	c.WorkerMaxRelaunches = int(l.integer("WORKER_MAX_RELAUNCHES", 5, 0, 100))
	c.Fleet = fleet.Config{
		MaxWorkers: int(l.integer("MAX_TOKEN_WORKERS", 20, 0, 100_000)),
		MaxPerRun:  int(l.integer("MAX_WORKERS_PER_RUN", 10, 1, 10_000)),
		Target:     l.duration("RUN_TARGET_DURATION", 0),
	}
	c.WebhookURL = l.str("WEBHOOK_URL", "")
	if c.WebhookURL != "" {
		if u, err := url.Parse(c.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			l.fail("WEBHOOK_URL", "want an http or https URL with a host")
		}
	}
	c.WebhookSecret = l.str("WEBHOOK_SECRET", "")
	if allow, err := egress.ParseAllow(l.str("WEBHOOK_ALLOW_CIDRS", "")); err != nil {
		l.fail("WEBHOOK_ALLOW_CIDRS", "%v", err)
	} else {
		c.WebhookAllow = allow
	}
	c.AllowedHosts = l.list("ALLOWED_HOSTS")
	if tp, err := egress.ParseAllow(l.str("TRUSTED_PROXIES", "")); err != nil {
		l.fail("TRUSTED_PROXIES", "%v", err)
	} else {
		c.TrustedProxies = tp
	}
	if s := l.str("WEBHOOK_PROXY", ""); s != "" {
		if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			l.fail("WEBHOOK_PROXY", "want an http or https proxy URL")
		} else {
			c.WebhookProxy = u
		}
	}

	if err := errors.Join(l.errs...); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// AuthOn reports whether any credential is configured.
func (c Config) AuthOn() bool { return c.AuthToken != "" || c.BasicAuthUser != "" }

// ListenAddr is the web server's host:port: BIND_ADDR, else loopback
// without auth and every interface with it.
func (c Config) ListenAddr() string {
	host := c.BindAddr
	if host == "" && !c.AuthOn() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(c.Port))
}

// database picks DATABASE_URL, then the Rails DB_* variables, then SQLite.
func (l *loader) database(dataDir string) models.DBConfig {
	if raw, ok := l.get("DATABASE_URL"); ok {
		cfg := models.DBConfig{URL: raw}
		if err := cfg.Validate(); err != nil {
			l.fail("DATABASE_URL", "%v", err)
		}
		return cfg
	}
	host, hasHost := l.get("DB_HOST")
	name, hasName := l.get("DB_NAME")
	switch {
	case hasHost && hasName:
		user, _ := l.get("DB_USER")
		pass, _ := l.lookup("DB_PASSWORD") // a password may have spaces
		return models.DBConfigFromRails(host, name, user, pass)
	case hasHost:
		l.fail("DB_NAME", "required when DB_HOST is set")
	case hasName:
		l.fail("DB_HOST", "required when DB_NAME is set")
	}
	return models.DBConfig{URL: "sqlite://" + filepath.Join(dataDir, sqliteFileName)}
}

// endpoint reads an optional http(s) URL.
func (l *loader) endpoint(name string) string {
	v, ok := l.get(name)
	if !ok {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		l.fail(name, "want an http(s) URL, got %q", v)
		return ""
	}
	return v
}
