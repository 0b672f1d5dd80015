package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/launcher/fleet"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/storage"
)

func env(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := kv[k]
		return v, ok
	}
}

// defaults is what an empty environment gives.
func defaults() Config {
	return Config{
		AppEnv:              "development",
		Port:                8080,
		DataDir:             "./data",
		DB:                  models.DBConfig{URL: "sqlite://data/pallarel.sqlite3", MaxOpenConns: 10, ConnMaxLifetime: 30 * time.Minute},
		LocalSave:           true,
		StorageDir:          "data/storage",
		Region:              "ap-northeast-1",
		S3Client:            storage.S3ClientConfig{Region: "ap-northeast-1"},
		Launcher:            "local",
		ECS:                 launcher.ECSConfig{ContainerName: "sidekiqContainer", Env: "development"},
		QueueHexLen:         16,
		MaxUploadBytes:      1 << 30,
		Templates:           render.TemplateLimits{}.WithDefaults(),
		SidekiqDialect:      8,
		WorkerIdleTimeout:   5 * time.Minute,
		MaxEventStreams:     1000,
		StreamsPerClient:    20,
		MinUploadRate:       16 << 10,
		RetainUploads:       7 * 24 * time.Hour,
		RetainResults:       30 * 24 * time.Hour,
		RetainRuns:          90 * 24 * time.Hour,
		SplitWindow:         4000,
		RowJobRetry:         3,
		RowCells:            "auto",
		SuperviseInterval:   5 * time.Second,
		WorkerLaunchGrace:   45 * time.Second,
		WorkerMaxRelaunches: 5,
		Fleet:               fleet.Config{MaxWorkers: 20, MaxPerRun: 10},
	}
}

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	got, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, defaults()) {
		t.Fatalf("got  %+v\nwant %+v", got, defaults())
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	ecsEnv := map[string]string{
		"REPORT_S3_BUCKET_NAME":          "reports-bucket",
		"ECS_CLUSTER":                    "report-cluster",
		"ECS_SIDEKIQ_TASK_DEFINITION":    "sidekiq:3",
		"ECS_SIDEKIQ_SUBNET_IDS":         "subnet-a, subnet-b,,",
		"ECS_SIDEKIQ_SECURITY_GROUP_IDS": "sg-1",
		"APP_ENV":                        "production",
	}
	with := func(base map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	tests := []struct {
		name string
		env  map[string]string
		want func(c *Config)
	}{
		{"redis url", with(nil, "REDIS_URL", "redis://:pw@redis.internal:6380/2"), func(c *Config) { c.RedisURL = "redis://:pw@redis.internal:6380/2" }},
		{"rediss url", with(nil, "REDIS_URL", "rediss://redis"), func(c *Config) { c.RedisURL = "rediss://redis" }},
		{"blank is unset", with(nil, "REDIS_URL", "  ", "PORT", ""), func(c *Config) {}},
		{"database url", with(nil, "DATABASE_URL", "postgres://u@h/db"), func(c *Config) { c.DB.URL = "postgres://u@h/db" }},
		{"database url wins over rails vars", with(nil, "DATABASE_URL", "sqlite::memory:", "DB_HOST", "h", "DB_NAME", "n"), func(c *Config) { c.DB.URL = "sqlite::memory:" }},
		{"rails db vars", with(nil, "DB_HOST", "db.internal", "DB_NAME", "app", "DB_USER", "rails", "DB_PASSWORD", "p@ss"), func(c *Config) {
			c.DB.URL = models.DBConfigFromRails("db.internal", "app", "rails", "p@ss").URL
		}},
		{"absolute data dir", with(nil, "DATA_DIR", "/var/lib/pallarel"), func(c *Config) {
			c.DataDir = "/var/lib/pallarel"
			c.DB.URL = "sqlite:///var/lib/pallarel/pallarel.sqlite3"
			c.StorageDir = "/var/lib/pallarel/storage"
		}},
		{"storage dir", with(nil, "STORAGE_DIR", "/srv/files"), func(c *Config) { c.StorageDir = "/srv/files" }},
		{"app reports dir", with(nil, "APP_REPORTS_DIR", "/mnt/shared/reports"), func(c *Config) { c.AppReportsDir = "/mnt/shared/reports" }},
		{"bucket turns local save off", with(nil, "REPORT_S3_BUCKET_NAME", "b"), func(c *Config) { c.S3.Bucket = "b"; c.LocalSave = false }},
		{"seed readme bucket name", with(nil, "AWS_S3_BUCKET", "b2"), func(c *Config) { c.S3.Bucket = "b2"; c.LocalSave = false }},
		{"rails bucket name wins", with(nil, "AWS_S3_BUCKET", "b2", "REPORT_S3_BUCKET_NAME", "b1"), func(c *Config) { c.S3.Bucket = "b1"; c.LocalSave = false }},
		{"local save forced with bucket", with(nil, "AWS_S3_BUCKET", "b", "LOCAL_SAVE", "YES"), func(c *Config) { c.S3.Bucket = "b" }},
		{"local save 1", with(nil, "LOCAL_SAVE", "1"), func(c *Config) {}},
		// As Rails' ENV["LOCAL_SAVE"].blank?: any non-blank value is local.
		{"local save no with bucket is local", with(nil, "AWS_S3_BUCKET", "b", "LOCAL_SAVE", "no"), func(c *Config) {
			c.S3.Bucket = "b"
			c.Warnings = []string{"LOCAL_SAVE=no means LOCAL save (reports stay on disk, not S3), as in the Rails app, where any non-blank LOCAL_SAVE is local; unset LOCAL_SAVE (or set it empty) to save to S3"}
		}},
		{"local save anything with bucket is local", with(nil, "AWS_S3_BUCKET", "b", "LOCAL_SAVE", "maybe"), func(c *Config) { c.S3.Bucket = "b" }},
		{"local save blank with bucket is s3", with(nil, "AWS_S3_BUCKET", "b", "LOCAL_SAVE", " \t "), func(c *Config) { c.S3.Bucket = "b"; c.LocalSave = false }},
		{"local save empty with bucket is s3", with(nil, "AWS_S3_BUCKET", "b", "LOCAL_SAVE", ""), func(c *Config) { c.S3.Bucket = "b"; c.LocalSave = false }},
		{"local save false without bucket", with(nil, "LOCAL_SAVE", "false"), func(c *Config) {
			c.Warnings = []string{"LOCAL_SAVE=false means LOCAL save (reports stay on disk, not S3), as in the Rails app, where any non-blank LOCAL_SAVE is local; unset LOCAL_SAVE (or set it empty) to save to S3"}
		}},
		// REDIS_URL as the app's config/redis.yml reads it: a bare host.
		{"redis bare host", with(nil, "REDIS_URL", "redis"), func(c *Config) { c.RedisURL = "redis://redis/0" }},
		{"redis bare host and port", with(nil, "REDIS_URL", "127.0.0.1:6379"), func(c *Config) { c.RedisURL = "redis://127.0.0.1:6379/0" }},
		{"redis bare host with db", with(nil, "REDIS_URL", "redis:6380", "REDIS_DB", "3"), func(c *Config) { c.RedisURL = "redis://redis:6380/3" }},
		{"redis bare ipv6", with(nil, "REDIS_URL", "[::1]:6379"), func(c *Config) { c.RedisURL = "redis://[::1]:6379/0" }},
		{"redis url with matching db", with(nil, "REDIS_URL", "redis://h/2", "REDIS_DB", "2"), func(c *Config) { c.RedisURL = "redis://h/2" }},
		{"s3 endpoint and path style", with(nil, "AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000", "S3_FORCE_PATH_STYLE", "true", "AWS_REGION", "us-east-1"), func(c *Config) {
			c.Region = "us-east-1"
			c.S3Client = storage.S3ClientConfig{Region: "us-east-1", Endpoint: "http://127.0.0.1:9000", UsePathStyle: true}
		}},
		{"ecs endpoint", with(nil, "AWS_ENDPOINT_URL_ECS", "https://ecs.local"), func(c *Config) { c.ECSEndpoint = "https://ecs.local" }},
		{"ecs by default with cluster and bucket", ecsEnv, func(c *Config) {
			c.AppEnv = "production"
			c.S3.Bucket = "reports-bucket"
			c.LocalSave = false
			c.Launcher = "ecs"
			c.ECS = launcher.ECSConfig{Cluster: "report-cluster", TaskDefinition: "sidekiq:3", Subnets: []string{"subnet-a", "subnet-b"},
				SecurityGroups: []string{"sg-1"}, ContainerName: "sidekiqContainer", Env: "production"}
		}},
		{"cluster but local save stays local", with(nil, "ECS_CLUSTER", "c"), func(c *Config) { c.ECS.Cluster = "c" }},
		{"launcher none overrides", with(ecsEnv, "LAUNCHER", "None", "ECS_CONTAINER_NAME", "w"), func(c *Config) {
			c.AppEnv = "production"
			c.S3.Bucket = "reports-bucket"
			c.LocalSave = false
			c.Launcher = "none"
			c.ECS = launcher.ECSConfig{Cluster: "report-cluster", TaskDefinition: "sidekiq:3", Subnets: []string{"subnet-a", "subnet-b"},
				SecurityGroups: []string{"sg-1"}, ContainerName: "w", Env: "production"}
		}},
		{"numbers", with(nil, "QUEUE_HEX_LEN", "40", "PORT", "3000", "MAX_UPLOAD_BYTES", "1048576", "TEMPLATE_MAX_CELLS", "500"), func(c *Config) {
			c.QueueHexLen, c.Port, c.MaxUploadBytes, c.Templates.MaxCells = 40, 3000, 1<<20, 500
		}},
		{"auth", with(nil, "AUTH_TOKEN", "t0k", "BASIC_AUTH_USER", "admin", "BASIC_AUTH_PASSWORD", "pw"), func(c *Config) {
			c.AuthToken, c.BasicAuthUser, c.BasicAuthPassword = "t0k", "admin", "pw"
		}},
		{"sidekiq 6", with(nil, "SIDEKIQ_DIALECT", "6"), func(c *Config) { c.SidekiqDialect = 6 }},
		{"sidekiq 7", with(nil, "SIDEKIQ_DIALECT", "7"), func(c *Config) { c.SidekiqDialect = 7 }},
		{"idle timeout duration", with(nil, "WORKER_IDLE_TIMEOUT", "90s"), func(c *Config) { c.WorkerIdleTimeout = 90 * time.Second }},
		{"idle timeout seconds", with(nil, "WORKER_IDLE_TIMEOUT", "600"), func(c *Config) { c.WorkerIdleTimeout = 10 * time.Minute }},
		{"db pool", with(nil, "DB_POOL", "3", "DB_CONN_MAX_LIFETIME", "5m"), func(c *Config) { c.DB.MaxOpenConns, c.DB.ConnMaxLifetime = 3, 5*time.Minute }},
		{"web hardening", with(nil, "BIND_ADDR", "0.0.0.0", "METRICS_ADDR", "127.0.0.1:9090", "SECRET_KEY_BASE", strings.Repeat("k", 32),
			"MAX_EVENT_STREAMS", "50", "MAX_EVENT_STREAMS_PER_CLIENT", "2", "MIN_UPLOAD_RATE", "0", "DASHBOARD_MASK_ARGS", "true",
			"RETAIN_UPLOADS", "1d", "RETAIN_RESULTS", "48h", "RETAIN_RUNS", "365d"), func(c *Config) {
			c.BindAddr, c.MetricsAddr, c.SecretKeyBase = "0.0.0.0", "127.0.0.1:9090", strings.Repeat("k", 32)
			c.MaxEventStreams, c.StreamsPerClient, c.MinUploadRate, c.MaskJobArgs = 50, 2, 0, true
			c.RetainUploads, c.RetainResults, c.RetainRuns = 24*time.Hour, 48*time.Hour, 365*24*time.Hour
		}},
		{"ecs task settings", with(ecsEnv, "ECS_ASSIGN_PUBLIC_IP", "true", "ECS_PLATFORM_VERSION", "1.4.0", "ECS_PROPAGATE_TAGS", "yes",
			"ECS_CAPACITY_PROVIDERS", "FARGATE_SPOT:3,FARGATE:1:1", "ECS_SIDEKIQ_COMMAND", `["-q","{queue}","-c","{concurrency}","--idle-timeout","2m"]`,
			"ECS_SIDEKIQ_CONCURRENCY", "20"), func(c *Config) {
			c.AppEnv = "production"
			c.S3.Bucket = "reports-bucket"
			c.LocalSave = false
			c.Launcher = "ecs"
			c.ECS = launcher.ECSConfig{Cluster: "report-cluster", TaskDefinition: "sidekiq:3", Subnets: []string{"subnet-a", "subnet-b"},
				SecurityGroups: []string{"sg-1"}, ContainerName: "sidekiqContainer", Env: "production",
				AssignPublicIP: true, PlatformVersion: "1.4.0", PropagateTags: true,
				CapacityProviders: []launcher.CapacityProvider{{Name: "FARGATE_SPOT", Weight: 3}, {Name: "FARGATE", Weight: 1, Base: 1}},
				Command:           []string{"-q", "{queue}", "-c", "{concurrency}", "--idle-timeout", "2m"}, Concurrency: 20}
		}},
		{"s3 checksums", with(nil, "S3_CHECKSUMS", "WHEN_SUPPORTED"), func(c *Config) { c.S3Client.Checksums = "when_supported" }},
		{"local detach and self", with(nil, "LOCAL_WORKERS_DETACH", "true", "ECS_CONTAINER_METADATA_URI_V4", "http://169.254.170.2/v4/x", "PALLAREL_LAUNCHED_BY", "local"), func(c *Config) {
			c.LocalDetach = true
			c.Self = launcher.SelfEnv{MetadataURI: "http://169.254.170.2/v4/x", LaunchedBy: "local"}
		}},
		{"token worker caps and target", with(nil, "MAX_TOKEN_WORKERS", "0", "MAX_WORKERS_PER_RUN", "4", "RUN_TARGET_DURATION", "10m"), func(c *Config) {
			c.Fleet = fleet.Config{MaxWorkers: 0, MaxPerRun: 4, Target: 10 * time.Minute}
		}},
		{"webhook", with(nil, "WEBHOOK_URL", "https://rails.example/hooks/pallarel", "WEBHOOK_SECRET", "k"), func(c *Config) {
			c.WebhookURL, c.WebhookSecret = "https://rails.example/hooks/pallarel", "k"
		}},
		{"webhook egress and hosts", with(nil, "WEBHOOK_ALLOW_CIDRS", "10.20.0.0/16, 192.168.7.9", "WEBHOOK_PROXY", "http://proxy.internal:3128",
			"ALLOWED_HOSTS", "reports.example.com, .corp.example", "TRUSTED_PROXIES", "10.0.0.0/8"), func(c *Config) {
			c.WebhookAllow = []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("192.168.7.9/32")}
			c.WebhookProxy, _ = url.Parse("http://proxy.internal:3128")
			c.AllowedHosts = []string{"reports.example.com", ".corp.example"}
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Load(env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			want := defaults()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string // substrings, each must appear
	}{
		{"redis scheme", map[string]string{"REDIS_URL": "http://x"}, []string{"scheme must be redis:// or rediss://"}},
		{"redis no host", map[string]string{"REDIS_URL": "redis://"}, []string{"no host"}},
		{"redis bad db", map[string]string{"REDIS_URL": "redis://h/abc"}, []string{"database \"abc\" is not a number"}},
		{"redis bad port", map[string]string{"REDIS_URL": "redis://h:99999/0"}, []string{"bad port \"99999\""}},
		{"redis garbage", map[string]string{"REDIS_URL": "redis://:pw@[::1"}, []string{"REDIS_URL: redis url \"redis://:xxxxx@[::1\": missing ']' in host"}},
		{"database url", map[string]string{"DATABASE_URL": "oracle://x"}, []string{"DATABASE_URL:"}},
		{"db host without name", map[string]string{"DB_HOST": "h"}, []string{"DB_NAME: required when DB_HOST is set"}},
		{"db name without host", map[string]string{"DB_NAME": "n"}, []string{"DB_HOST: required when DB_NAME is set"}},
		{"redis bare host with path", map[string]string{"REDIS_URL": "redis/0"}, []string{`REDIS_URL: "redis/0": want a redis:// or rediss:// URL, or a host such as redis`}},
		{"redis bare host bad port", map[string]string{"REDIS_URL": "redis:99999"}, []string{`REDIS_URL: "redis:99999": bad port "99999"`}},
		{"redis bare host no host", map[string]string{"REDIS_URL": ":6379"}, []string{`REDIS_URL: ":6379": no host`}},
		{"redis bare ipv6 without brackets", map[string]string{"REDIS_URL": "::1"}, []string{"brackets"}},
		{"redis db", map[string]string{"REDIS_URL": "redis", "REDIS_DB": "x"}, []string{`REDIS_DB: want an integer, got "x"`}},
		{"redis db conflicts", map[string]string{"REDIS_URL": "redis://h/1", "REDIS_DB": "2"}, []string{"REDIS_DB: REDIS_URL \"redis://h/1\" names database 1; REDIS_DB 2 applies only to a bare host"}},
		{"s3 endpoint", map[string]string{"AWS_ENDPOINT_URL_S3": "localhost:9000"}, []string{"AWS_ENDPOINT_URL_S3: want an http(s) URL"}},
		{"ecs endpoint", map[string]string{"AWS_ENDPOINT_URL_ECS": "ftp://x"}, []string{"AWS_ENDPOINT_URL_ECS: want an http(s) URL"}},
		{"path style", map[string]string{"S3_FORCE_PATH_STYLE": "on"}, []string{"S3_FORCE_PATH_STYLE:"}},
		{"ecs missing all", map[string]string{"LAUNCHER": "ecs"}, []string{
			"ECS_CLUSTER: required when LAUNCHER is ecs", "ECS_SIDEKIQ_TASK_DEFINITION: required", "ECS_SIDEKIQ_SUBNET_IDS: required", "ECS_SIDEKIQ_SECURITY_GROUP_IDS: required",
		}},
		{"ecs blank list", map[string]string{"LAUNCHER": "ecs", "ECS_CLUSTER": "c", "ECS_SIDEKIQ_TASK_DEFINITION": "t", "ECS_SIDEKIQ_SUBNET_IDS": " , ", "ECS_SIDEKIQ_SECURITY_GROUP_IDS": "sg"}, []string{"ECS_SIDEKIQ_SUBNET_IDS: required"}},
		{"launcher", map[string]string{"LAUNCHER": "k8s"}, []string{`LAUNCHER: want ecs, local or none, got "k8s"`}},
		{"hex len low", map[string]string{"QUEUE_HEX_LEN": "0"}, []string{"QUEUE_HEX_LEN: want 1..40, got 0"}},
		{"hex len high", map[string]string{"QUEUE_HEX_LEN": "41"}, []string{"QUEUE_HEX_LEN: want 1..40, got 41"}},
		{"hex len text", map[string]string{"QUEUE_HEX_LEN": "sixteen"}, []string{`QUEUE_HEX_LEN: want an integer, got "sixteen"`}},
		{"port", map[string]string{"PORT": "70000"}, []string{"PORT: want 1..65535"}},
		{"max upload", map[string]string{"MAX_UPLOAD_BYTES": "1GB"}, []string{"MAX_UPLOAD_BYTES: want an integer"}},
		{"max upload zero", map[string]string{"MAX_UPLOAD_BYTES": "0"}, []string{"MAX_UPLOAD_BYTES: want 1.."}},
		{"basic auth half", map[string]string{"BASIC_AUTH_USER": "admin"}, []string{"BASIC_AUTH_USER: BASIC_AUTH_USER and BASIC_AUTH_PASSWORD must be set together"}},
		{"basic auth other half", map[string]string{"BASIC_AUTH_PASSWORD": "pw"}, []string{"must be set together"}},
		{"dialect", map[string]string{"SIDEKIQ_DIALECT": "5"}, []string{`SIDEKIQ_DIALECT: want 8, 7 or 6, got "5"`}},
		{"idle timeout", map[string]string{"WORKER_IDLE_TIMEOUT": "soon"}, []string{"WORKER_IDLE_TIMEOUT: want a duration"}},
		{"bind addr", map[string]string{"BIND_ADDR": "example.com"}, []string{"BIND_ADDR: want an IP address"}},
		{"metrics addr", map[string]string{"METRICS_ADDR": "9090"}, []string{"METRICS_ADDR: want host:port"}},
		{"short secret", map[string]string{"SECRET_KEY_BASE": "abc"}, []string{"SECRET_KEY_BASE: want at least 32"}},
		{"retention", map[string]string{"RETAIN_RUNS": "forever"}, []string{"RETAIN_RUNS: want a duration"}},
		{"db pool zero", map[string]string{"DB_POOL": "0"}, []string{"DB_POOL: want 1..1000"}},
		{"webhook scheme", map[string]string{"WEBHOOK_URL": "ftp://x/y"}, []string{"WEBHOOK_URL: want an http or https URL"}},
		{"webhook allow", map[string]string{"WEBHOOK_ALLOW_CIDRS": "intranet"}, []string{"WEBHOOK_ALLOW_CIDRS:"}},
		{"webhook proxy", map[string]string{"WEBHOOK_PROXY": "socks5://x:1"}, []string{"WEBHOOK_PROXY: want an http or https proxy URL"}},
		{"app reports dir relative", map[string]string{"APP_REPORTS_DIR": "tmp/reports"}, []string{"APP_REPORTS_DIR: want an absolute path"}},
		{"trusted proxies", map[string]string{"TRUSTED_PROXIES": "lb.internal"}, []string{"TRUSTED_PROXIES:"}},
		{"idle timeout negative", map[string]string{"WORKER_IDLE_TIMEOUT": "-5m"}, []string{"WORKER_IDLE_TIMEOUT: want a positive duration"}},
		{"ecs command with the binary", map[string]string{"ECS_SIDEKIQ_COMMAND": `["/app/worker","-q","{queue}"]`}, []string{"ECS_SIDEKIQ_COMMAND: want a JSON array of the worker's arguments"}},
		{"ecs command not json", map[string]string{"ECS_SIDEKIQ_COMMAND": `-q {queue}`}, []string{"ECS_SIDEKIQ_COMMAND:"}},
		{"ecs capacity providers", map[string]string{"ECS_CAPACITY_PROVIDERS": "FARGATE:1:1,FARGATE_SPOT:1:2"}, []string{"ECS_CAPACITY_PROVIDERS: ecs: only one capacity provider may have a base"}},
		{"ecs capacity provider syntax", map[string]string{"ECS_CAPACITY_PROVIDERS": "FARGATE:x"}, []string{"ECS_CAPACITY_PROVIDERS:"}},
		{"ecs public ip", map[string]string{"ECS_ASSIGN_PUBLIC_IP": "maybe"}, []string{"ECS_ASSIGN_PUBLIC_IP:"}},
		{"ecs concurrency", map[string]string{"ECS_SIDEKIQ_CONCURRENCY": "0"}, []string{"ECS_SIDEKIQ_CONCURRENCY: want 1..1000"}},
		{"s3 checksums", map[string]string{"S3_CHECKSUMS": "always"}, []string{`S3_CHECKSUMS: want when_required or when_supported, got "always"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(env(tt.env))
			if err == nil {
				t.Fatal("want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestLoadAllErrorsAtOnce: one bad deploy sees every problem in one go.
func TestLoadAllErrorsAtOnce(t *testing.T) {
	t.Parallel()
	_, err := Load(env(map[string]string{
		"REDIS_URL":           "http://x",
		"DB_HOST":             "h",
		"LAUNCHER":            "ecs",
		"QUEUE_HEX_LEN":       "99",
		"PORT":                "x",
		"MAX_UPLOAD_BYTES":    "-1",
		"TEMPLATE_MAX_BYTES":  "0",
		"BASIC_AUTH_USER":     "u",
		"SIDEKIQ_DIALECT":     "9",
		"WORKER_IDLE_TIMEOUT": "never",
		"AWS_ENDPOINT_URL_S3": "nope",
	}))
	if err == nil {
		t.Fatal("want error")
	}
	vars := []string{"REDIS_URL", "DB_NAME", "ECS_CLUSTER", "ECS_SIDEKIQ_TASK_DEFINITION",
		"ECS_SIDEKIQ_SUBNET_IDS", "ECS_SIDEKIQ_SECURITY_GROUP_IDS", "QUEUE_HEX_LEN", "PORT", "MAX_UPLOAD_BYTES", "TEMPLATE_MAX_BYTES",
		"BASIC_AUTH_USER", "SIDEKIQ_DIALECT", "WORKER_IDLE_TIMEOUT", "AWS_ENDPOINT_URL_S3"}
	for _, v := range vars {
		if !strings.Contains(err.Error(), v+":") {
			t.Errorf("error lacks %s:\n%v", v, err)
		}
	}
	// One line per problem, joined (errors.Join), and each unwrappable.
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != len(vars) {
		n := -1
		if joined != nil {
			n = len(joined.Unwrap())
		}
		t.Errorf("joined %d errors, want %d:\n%v", n, len(vars), err)
	}
	if got := strings.Count(err.Error(), "\n") + 1; got != len(vars) {
		t.Errorf("%d lines, want %d", got, len(vars))
	}
}

func TestSecretsNotEchoed(t *testing.T) {
	t.Parallel()
	_, err := Load(env(map[string]string{"REDIS_URL": "redis://:supersecret@[::1", "DATABASE_URL": "mysql://u:supersecret@h/"}))
	if err == nil || strings.Contains(err.Error(), "supersecret") {
		t.Fatalf("error leaks a secret: %v", err)
	}
}

// A bad URL's error shows the URL, so a deploy sees which one is wrong,
// with the password masked, whether or not the URL parses.
func TestBadURLsShownMasked(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, value, want string }{
		{"REDIS_URL", "redis://:supersecret@[::1", `"redis://:xxxxx@[::1"`},
		{"REDIS_URL", "http://user:supersecret@host:6379/0", `"http://user:xxxxx@host:6379/0"`},
		{"REDIS_URL", "redis://:supersecret@host:99999/0", `"redis://:xxxxx@host:99999/0"`},
		{"REDIS_URL", "redis://u:super@secret@host/x", `"redis://u:xxxxx@host/x"`},
		{"DATABASE_URL", "mysql://u:supersecret@h/", `"mysql://u:xxxxx@h/"`},
		{"DATABASE_URL", "postgres://u:supersecret@[::1/db", `"postgres://u:xxxxx@[::1/db"`},
		{"DATABASE_URL", "mysql://u:supersecret@[::1/db", `"mysql://u:xxxxx@[::1/db"`},
	} {
		_, err := Load(env(map[string]string{tt.name: tt.value}))
		if err == nil {
			t.Errorf("%s=%s accepted", tt.name, tt.value)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "secret") || !strings.Contains(msg, tt.want) {
			t.Errorf("%s=%s: error %q, want %s and no password", tt.name, tt.value, msg, tt.want)
		}
	}
}

func TestValidRedisURL(t *testing.T) {
	t.Parallel()
	for url, ok := range map[string]bool{
		"redis://localhost":          true,
		"redis://localhost:6379/0":   true,
		"redis://:pw@h:1/15":         true,
		"redis://user:pw@h":          true,
		"rediss://h:6380":            true,
		"redis://h/":                 true,
		"unix:///tmp/redis.sock":     false,
		"localhost:6379":             true, // a bare host, as the Rails app's redis.yml
		"redis":                      true,
		"redis:abc":                  false,
		"redis@h":                    false,
		"redis://h/-1":               false,
		"redis://h:0":                false,
		"":                           false,
		"redis://[::1]:6379/3":       true,
		"redis://h/1/2":              false,
		fmt.Sprint("redis://h:", 80): true,
	} {
		if _, err := normalizeRedisURL(url, 0); (err == nil) != ok {
			t.Errorf("ValidRedisURL(%q) = %v, want ok=%v", url, err, ok)
		}
	}
}

// TestListenAddr: without auth the server binds loopback unless BIND_ADDR
// says otherwise; with auth it binds every interface.
func TestListenAddr(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{nil, "127.0.0.1:8080"},
		{map[string]string{"BIND_ADDR": "0.0.0.0"}, "0.0.0.0:8080"},
		{map[string]string{"AUTH_TOKEN": "t", "PORT": "9000"}, ":9000"},
		{map[string]string{"BASIC_AUTH_USER": "u", "BASIC_AUTH_PASSWORD": "p", "BIND_ADDR": "127.0.0.1"}, "127.0.0.1:8080"},
		{map[string]string{"BIND_ADDR": "::1"}, "[::1]:8080"},
	} {
		c, err := Load(env(tt.env))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ListenAddr(); got != tt.want {
			t.Errorf("%v: ListenAddr = %q, want %q", tt.env, got, tt.want)
		}
	}
}
