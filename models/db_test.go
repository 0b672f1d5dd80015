package models

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"gorm.io/gorm"
)

// Test databases. A missing server fails the test.
const (
	testMaxOpenConns = 4

	mariaAdminURL    = "mysql://root@127.0.0.1:3306/test"
	postgresAdminURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

func randomName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// openSQLite opens a fresh SQLite file in a temp dir.
func openSQLite(t testing.TB) (*gorm.DB, DBConfig) {
	t.Helper()
	cfg := DBConfig{URL: "sqlite://" + filepath.Join(t.TempDir(), "test.sqlite3")}
	return mustOpen(t, cfg), cfg
}

// openMariaDB creates a uniquely named database and drops it at cleanup.
func openMariaDB(t testing.TB) (*gorm.DB, DBConfig) {
	t.Helper()
	admin := mustOpen(t, DBConfig{URL: mariaAdminURL})
	name := randomName("pallarel_models_")
	if err := admin.Exec("CREATE DATABASE `" + name + "` CHARACTER SET utf8mb4").Error; err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if err := admin.Exec("DROP DATABASE `" + name + "`").Error; err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	cfg := DBConfig{URL: "mysql://root@127.0.0.1:3306/" + name}
	return mustOpen(t, cfg), cfg
}

// openPostgres creates a uniquely named database and drops it at cleanup.
func openPostgres(t testing.TB) (*gorm.DB, DBConfig) {
	t.Helper()
	admin := mustOpen(t, DBConfig{URL: postgresAdminURL})
	name := randomName("pallarel_models_")
	if err := admin.Exec(`CREATE DATABASE "` + name + `"`).Error; err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if err := admin.Exec(`DROP DATABASE "` + name + `" WITH (FORCE)`).Error; err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	cfg := DBConfig{URL: "postgres://postgres@127.0.0.1:5432/" + name + "?sslmode=disable"}
	return mustOpen(t, cfg), cfg
}

// mustOpen opens cfg and closes it at cleanup (before any earlier-registered
// cleanup drops its database).
func mustOpen(t testing.TB, cfg DBConfig) *gorm.DB {
	t.Helper()
	// Tests run in parallel beside other suites on the same servers: each
	// pool stays small so together they stay below max_connections.
	if cfg.MaxOpenConns == 0 {
		cfg.MaxOpenConns = testMaxOpenConns
	}
	db, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open %s: %v", cfg.URL, err)
	}
	t.Cleanup(func() { Close(db) })
	return db
}

// databases lists every backend the suites run against.
var databases = []struct {
	name string
	open func(testing.TB) (*gorm.DB, DBConfig)
}{
	{"sqlite", openSQLite},
	{"mariadb", openMariaDB},
	{"postgres", openPostgres},
}

// eachDB runs fn against a freshly migrated database of every kind.
func eachDB(t *testing.T, fn func(t *testing.T, db *gorm.DB)) {
	t.Helper()
	for _, d := range databases {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			db, _ := d.open(t)
			if err := Migrate(context.Background(), db); err != nil {
				t.Fatalf("migrate: %v", err)
			}
			fn(t, db)
		})
	}
}

func TestDBConfigFromRails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host, name, user, pass string
		want                   string
	}{
		{"db.internal", "app_production", "app", "s3cret", "mysql://app:s3cret@db.internal/app_production"},
		{"db:3307", "app", "root", "", "mysql://root@db:3307/app"},
		{"db", "app", "", "", "mysql://db/app"},
		{"db", "app", "u", "p@ss/w:rd", "mysql://u:p%40ss%2Fw%3Ard@db/app"},
	}
	for _, tt := range tests {
		got := DBConfigFromRails(tt.host, tt.name, tt.user, tt.pass)
		if got.URL != tt.want {
			t.Errorf("DBConfigFromRails(%q,%q,%q,%q) = %q, want %q", tt.host, tt.name, tt.user, tt.pass, got.URL, tt.want)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("Validate(%q): %v", got.URL, err)
		}
	}
}

func TestMySQLDSN(t *testing.T) {
	t.Parallel()
	dsn, err := mysqlDSN("mysql://u:p%40ss@db/app?timeout=5s&parseTime=false")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"u:p@ss@tcp(db:3306)/app?", "parseTime=true", "clientFoundRows=true", "timeout=5s", "charset=utf8mb4"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("dsn %q lacks %q", dsn, want)
		}
	}
}

func TestDBConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url     string
		dialect string
		ok      bool
	}{
		{"sqlite:///abs/path.db", "sqlite", true},
		{"sqlite://rel/path.db", "sqlite", true},
		{"sqlite::memory:", "sqlite", true},
		{"sqlite://", "sqlite", false},
		{"sqlite:foo.db", "sqlite", false},
		{"sqlite:///x.db?mode=ro", "sqlite", false},
		{"mysql://root@127.0.0.1:3306/test?charset=utf8mb4", "mysql", true},
		{"mysql://root@127.0.0.1:3306/", "mysql", false},
		{"mysql:///db", "mysql", false},
		{"postgres://postgres@127.0.0.1:5432/test", "postgres", true},
		{"postgresql://postgres@127.0.0.1:5432/test", "postgres", true},
		{"redis://localhost", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		cfg := DBConfig{URL: tt.url}
		d, _ := cfg.Dialect()
		if d != tt.dialect {
			t.Errorf("Dialect(%q) = %q, want %q", tt.url, d, tt.dialect)
		}
		if err := cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", tt.url, err, tt.ok)
		}
	}
	// Errors must not leak passwords.
	err := DBConfig{URL: "mysql://u:topsecret@h/"}.Validate()
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("error %v leaks the password", err)
	}
}

func TestOpenSQLiteForms(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// In-memory: all queries see the same database.
	db := mustOpen(t, DBConfig{URL: "sqlite::memory:"})
	if err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	st := NewStore(db)
	if _, err := st.CreateStatus(ctx, "tok", "q", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := st.StatusByToken(ctx, "tok"); err != nil {
		t.Fatal(err)
	}
	// Absolute path, parent directories created, WAL on.
	path := filepath.Join(t.TempDir(), "a", "b", "x.db")
	db = mustOpen(t, DBConfig{URL: "sqlite://" + path})
	var mode string
	if err := db.Raw("PRAGMA journal_mode").Scan(&mode).Error; err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	var timeout int
	if err := db.Raw("PRAGMA busy_timeout").Scan(&timeout).Error; err != nil || timeout != 10000 {
		t.Fatalf("busy_timeout = %d, %v", timeout, err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	_, err := Open(context.Background(), DBConfig{URL: "mysql://root@127.0.0.1:1/x?timeout=1s"})
	if err == nil {
		t.Fatal("want error for closed port")
	}
}

// railsSchema is what Rails' schema.rb creates, per dialect, without our
// extra columns, plus a row the migration must keep.
var railsSchema = map[string][]string{
	"sqlite": {
		`CREATE TABLE "client_reports" ("id" integer PRIMARY KEY AUTOINCREMENT NOT NULL, "security_hash" varchar, "deleted_at" datetime(6), "report_type" integer, "count" integer DEFAULT 0, "file" varchar, "status" integer, "token" varchar, "created_at" datetime(6) NOT NULL, "updated_at" datetime(6) NOT NULL)`,
		`CREATE INDEX "index_client_reports_on_token" ON "client_reports" ("token")`,
		`CREATE TABLE "csv_processing_statuses" ("id" integer PRIMARY KEY AUTOINCREMENT NOT NULL, "token" varchar NOT NULL, "total_count" integer, "done_count" integer, "queue_name" varchar, "worker_task_arn" varchar, "worker_started_at" datetime(6), "finalized_at" datetime(6), "force_shutdown_at" datetime(6), "created_at" datetime(6) NOT NULL, "updated_at" datetime(6) NOT NULL)`,
		`CREATE UNIQUE INDEX "index_csv_processing_statuses_on_token" ON "csv_processing_statuses" ("token")`,
	},
	"mysql": {
		"CREATE TABLE `client_reports` (`id` bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, `security_hash` varchar(255), `deleted_at` datetime(6), `report_type` int, `count` int DEFAULT 0, `file` varchar(255), `status` int, `token` varchar(255), `created_at` datetime(6) NOT NULL, `updated_at` datetime(6) NOT NULL, INDEX `index_client_reports_on_token` (`token`))",
		"CREATE TABLE `csv_processing_statuses` (`id` bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, `token` varchar(255) NOT NULL, `total_count` int, `done_count` int, `queue_name` varchar(255), `worker_task_arn` varchar(255), `worker_started_at` datetime(6), `finalized_at` datetime(6), `force_shutdown_at` datetime(6), `created_at` datetime(6) NOT NULL, `updated_at` datetime(6) NOT NULL, UNIQUE INDEX `index_csv_processing_statuses_on_token` (`token`))",
	},
	"postgres": {
		`CREATE TABLE "client_reports" ("id" bigserial primary key, "security_hash" character varying, "deleted_at" timestamp(6), "report_type" integer, "count" integer DEFAULT 0, "file" character varying, "status" integer, "token" character varying, "created_at" timestamp(6) NOT NULL, "updated_at" timestamp(6) NOT NULL)`,
		`CREATE INDEX "index_client_reports_on_token" ON "client_reports" ("token")`,
		`CREATE TABLE "csv_processing_statuses" ("id" bigserial primary key, "token" character varying NOT NULL, "total_count" integer, "done_count" integer, "queue_name" character varying, "worker_task_arn" character varying, "worker_started_at" timestamp(6), "finalized_at" timestamp(6), "force_shutdown_at" timestamp(6), "created_at" timestamp(6) NOT NULL, "updated_at" timestamp(6) NOT NULL)`,
		`CREATE UNIQUE INDEX "index_csv_processing_statuses_on_token" ON "csv_processing_statuses" ("token")`,
	},
}

var railsRows = []string{
	`INSERT INTO client_reports (security_hash, report_type, count, file, status, token, created_at, updated_at) VALUES ('abc', 1, 3, 'reports/t.zip', 2, 'tok-rails', '2025-01-02 03:04:05.123456', '2025-01-02 03:04:05.123456')`,
	`INSERT INTO csv_processing_statuses (token, total_count, done_count, queue_name, created_at, updated_at) VALUES ('tok-rails', 5, NULL, 'report-abc', '2025-01-02 03:04:05.123456', '2025-01-02 03:04:05.123456')`,
}

func columnNames(t *testing.T, db *gorm.DB, table string) []string {
	t.Helper()
	cols, err := db.Migrator().ColumnTypes(table)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cols {
		names = append(names, c.Name())
	}
	return names
}

func TestMigrateKeepsRailsSchema(t *testing.T) {
	t.Parallel()
	for _, d := range databases {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, _ := d.open(t)
			for _, stmt := range append(railsSchema[db.Dialector.Name()], railsRows...) {
				if err := db.Exec(stmt).Error; err != nil {
					t.Fatalf("%s: %v", stmt, err)
				}
			}
			beforeReports := columnNames(t, db, "client_reports")
			beforeStatuses := columnNames(t, db, "csv_processing_statuses")
			for range 2 { // idempotent
				if err := Migrate(ctx, db); err != nil {
					t.Fatal(err)
				}
			}
			// The Rails tables are left as Rails made them.
			wantReports, wantStatuses := beforeReports, beforeStatuses
			if got := columnNames(t, db, "client_reports"); fmt.Sprint(got) != fmt.Sprint(wantReports) {
				t.Errorf("client_reports columns = %v, want %v", got, wantReports)
			}
			if got := columnNames(t, db, "csv_processing_statuses"); fmt.Sprint(got) != fmt.Sprint(wantStatuses) {
				t.Errorf("csv_processing_statuses columns = %v, want %v", got, wantStatuses)
			}
			// The Rails rows survive, with their NULLs readable.
			st := NewStore(db)
			r, err := st.ReportByToken(ctx, "tok-rails")
			if err != nil {
				t.Fatal(err)
			}
			if r.ReportType != ReportTypePDF || r.Status != ReportCompleted || r.Count != 3 || r.File != "reports/t.zip" ||
				r.SecurityHash != "abc" || r.DeletedAt != nil || r.ErrorMessage != "" {
				t.Errorf("rails report = %+v", r)
			}
			if r.CreatedAt.Nanosecond() != 123456000 {
				t.Errorf("created_at %v lost microseconds", r.CreatedAt)
			}
			s, err := st.StatusByToken(ctx, "tok-rails")
			if err != nil {
				t.Fatal(err)
			}
			if s.TotalCount != 5 || s.DoneCount != 0 || s.FailedCount != 0 || s.QueueName != "report-abc" {
				t.Errorf("rails status = %+v", s)
			}
			// Increments work on Rails' NULL done_count, and the new
			// column default applies to old rows.
			if err := st.IncrementDone(ctx, "tok-rails", 2); err != nil {
				t.Fatal(err)
			}
			if err := st.IncrementFailed(ctx, "tok-rails", 1); err != nil {
				t.Fatal(err)
			}
			s, _ = st.StatusByToken(ctx, "tok-rails")
			if s.DoneCount != 2 || s.FailedCount != 1 {
				t.Errorf("after increments = %+v", s)
			}
			// Rails' indexes are still there.
			if !db.Migrator().HasIndex("csv_processing_statuses", "index_csv_processing_statuses_on_token") {
				t.Error("unique token index gone")
			}
			if _, err := st.CreateStatus(ctx, "tok-rails", "other", 9); err != nil {
				t.Fatal(err)
			}
			var n int64
			db.Model(&CsvProcessingStatus{}).Count(&n)
			if n != 1 {
				t.Errorf("%d status rows after duplicate create", n)
			}
		})
	}
}

// railsColumns are the columns of the app's db/schema.rb (with the
// migration that added force_shutdown_at), as
// ../shared/docs/rails-contract.md lists them: the Rails tables have these
// and no other.
var railsColumns = map[string][]string{
	"client_reports":          {"id", "security_hash", "deleted_at", "report_type", "count", "file", "status", "token", "created_at", "updated_at"},
	"csv_processing_statuses": {"id", "token", "total_count", "done_count", "queue_name", "worker_task_arn", "worker_started_at", "finalized_at", "force_shutdown_at", "created_at", "updated_at"},
}

// checkColumns checks that the Rails tables have exactly the app's
// schema's columns: one more (Pallarel's, or anyone's) fails.
func checkColumns(t *testing.T, db *gorm.DB) {
	t.Helper()
	for table, cols := range railsColumns {
		got := columnNames(t, db, table)
		want := append([]string(nil), cols...)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s columns = %v, want exactly the app's schema.rb %v", table, got, want)
		}
	}
}

func TestMigrateFresh(t *testing.T) {
	eachDB(t, func(t *testing.T, db *gorm.DB) {
		m := db.Migrator()
		for _, table := range []string{"client_reports", "csv_processing_statuses"} {
			if !m.HasTable(table) {
				t.Fatalf("table %s missing", table)
			}
		}
		checkColumns(t, db)
		if !m.HasIndex("csv_processing_statuses", "index_csv_processing_statuses_on_token") {
			t.Error("missing unique index on csv_processing_statuses.token")
		}
		for _, table := range []string{"pallarel_runs", "pallarel_reports"} {
			if !m.HasTable(table) {
				t.Errorf("Pallarel's table %s missing", table)
			}
		}
		// token is unique and not null at the database level.
		now := "'2025-01-01 00:00:00'"
		ins := "INSERT INTO csv_processing_statuses (token, created_at, updated_at) VALUES (%s, " + now + ", " + now + ")"
		if err := db.Exec(fmt.Sprintf(ins, "'dup'")).Error; err != nil {
			t.Fatal(err)
		}
		if err := db.Exec(fmt.Sprintf(ins, "'dup'")).Error; err == nil {
			t.Error("duplicate token accepted")
		}
		if err := db.Exec(fmt.Sprintf(ins, "NULL")).Error; err == nil {
			t.Error("NULL token accepted")
		}
		// Migrate again is a no-op.
		if err := Migrate(context.Background(), db); err != nil {
			t.Fatal(err)
		}
	})
}

func TestNotFoundIsErrNotFound(t *testing.T) {
	if !errors.Is(notFound(gorm.ErrRecordNotFound), ErrNotFound) {
		t.Fatal("notFound does not map")
	}
}

// TestPoolIsCapped runs more concurrent queries than the pool allows on
// every database: the driver never opens more than MaxOpenConns, and the
// default cap applies when none is set.
func TestPoolIsCapped(t *testing.T) {
	for _, d := range databases {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			db, cfg := d.open(t)
			sqlDB, err := db.DB()
			if err != nil {
				t.Fatal(err)
			}
			if got := sqlDB.Stats().MaxOpenConnections; got != testMaxOpenConns {
				t.Fatalf("MaxOpenConnections = %d, want %d", got, testMaxOpenConns)
			}
			var wg sync.WaitGroup
			var peak atomic.Int32
			for range 12 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tx := db.Begin()
					defer tx.Rollback()
					if err := tx.Exec("SELECT 1").Error; err != nil {
						t.Error(err)
						return
					}
					n := int32(sqlDB.Stats().OpenConnections)
					for {
						old := peak.Load()
						if n <= old || peak.CompareAndSwap(old, n) {
							break
						}
					}
				}()
			}
			wg.Wait()
			if p := peak.Load(); p > testMaxOpenConns {
				t.Fatalf("%d connections open at once, cap is %d", p, testMaxOpenConns)
			}
			cfg.MaxOpenConns = 0
			def, err := Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer Close(def)
			defDB, _ := def.DB()
			if got := defDB.Stats().MaxOpenConnections; got != DefaultMaxOpenConns {
				t.Fatalf("default MaxOpenConnections = %d, want %d", got, DefaultMaxOpenConns)
			}
		})
	}
}
