// Package models holds the two tables the Rails app and Pallarel share,
// client_reports and csv_processing_statuses, as gorm models on exactly the
// Rails schema, plus the few atomic updates the jobs need.
//
// The same code runs on SQLite (development, the all-in-one mode), MySQL /
// MariaDB (the Rails production database) and PostgreSQL.
package models

import (
	"context"
	"errors"
	"fmt"
	"github.com/pallarel/pallarel/internal/secreturl"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/go-sql-driver/mysql"
	gormmysql "gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// DBConfig says which database to open.
type DBConfig struct {
	// URL is one of:
	//   sqlite:///abs/path.db, sqlite://rel/path.db, sqlite::memory:
	//   mysql://user:pass@host:port/db?params
	//   postgres://... or postgresql://...
	URL string

	// MaxOpenConns caps the connections this process opens, so many event
	// streams or workers cannot exhaust the server's max_connections.
	// Defaults to DefaultMaxOpenConns; SQLite in memory always uses 1.
	MaxOpenConns int
	// MaxIdleConns is the connections kept open while idle. Defaults to
	// MaxOpenConns, capped by it.
	MaxIdleConns int
	// ConnMaxLifetime recycles a connection after this long, so a failover
	// or a proxy's idle cut is noticed. Defaults to DefaultConnMaxLifetime.
	ConnMaxLifetime time.Duration
}

// Pool defaults, as Rails' database.yml "pool: 5" scaled for a process
// that also serves event streams.
const (
	DefaultMaxOpenConns    = 10
	DefaultConnMaxLifetime = 30 * time.Minute
)

// DBConfigFromRails builds the MySQL URL the Rails app's database.yml makes
// from DB_HOST, DB_NAME, DB_USER and DB_PASSWORD. host may carry a port.
func DBConfigFromRails(host, name, user, password string) DBConfig {
	u := url.URL{Scheme: "mysql", Host: host, Path: "/" + name}
	if user != "" || password != "" {
		if password != "" {
			u.User = url.UserPassword(user, password)
		} else {
			u.User = url.User(user)
		}
	}
	return DBConfig{URL: u.String()}
}

// Dialect names the database kind behind a DBConfig.
func (c DBConfig) Dialect() (string, error) {
	switch {
	case strings.HasPrefix(c.URL, "sqlite:"):
		return "sqlite", nil
	case strings.HasPrefix(c.URL, "mysql://"):
		return "mysql", nil
	case strings.HasPrefix(c.URL, "postgres://"), strings.HasPrefix(c.URL, "postgresql://"):
		return "postgres", nil
	}
	return "", fmt.Errorf("database url %q: want sqlite:, mysql:// or postgres://", secreturl.Redact(c.URL))
}

// Validate checks the URL without connecting.
func (c DBConfig) Validate() error {
	_, err := c.dialector()
	return err
}

// sqliteBusyTimeout is how long a SQLite writer waits for another's lock.
const sqliteBusyTimeout = 10 * time.Second

// dialector turns the URL into a gorm dialector.
func (c DBConfig) dialector() (gorm.Dialector, error) {
	dialect, err := c.Dialect()
	if err != nil {
		return nil, err
	}
	switch dialect {
	case "sqlite":
		path, err := sqlitePath(c.URL)
		if err != nil {
			return nil, err
		}
		return sqlite.Open(sqliteDSN(path)), nil
	case "mysql":
		dsn, err := mysqlDSN(c.URL)
		if err != nil {
			return nil, err
		}
		return gormmysql.Open(dsn), nil
	default:
		if _, err := url.Parse(c.URL); err != nil {
			return nil, fmt.Errorf("database url %q: %w", secreturl.Redact(c.URL), secreturl.ParseError(err))
		}
		return postgres.Open(c.URL), nil
	}
}

// sqlitePath returns the file path ("" for in-memory) of a sqlite: URL.
func sqlitePath(raw string) (string, error) {
	if raw == "sqlite::memory:" {
		return ":memory:", nil
	}
	path, ok := strings.CutPrefix(raw, "sqlite://")
	if !ok || path == "" {
		return "", fmt.Errorf("database url %q: want sqlite:///abs/path.db, sqlite://rel/path.db or sqlite::memory:", raw)
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		return "", fmt.Errorf("database url %q: sqlite parameters are set by pallarel", raw)
	}
	return path, nil
}

// sqliteDSN turns on WAL (readers do not block the writer), a busy timeout
// (writers queue instead of failing with SQLITE_BUSY) and immediate
// transactions (a read-then-write transaction cannot deadlock on upgrade),
// so several goroutines and processes can share the file. Beware:
// glebarez/go-sqlite v1.21 drops _txlock when _time_format is set, so
// db.Transaction begins DEFERRED; a transaction that must write begins
// IMMEDIATE itself (withMigrationLock).
func sqliteDSN(path string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()))
	if path != ":memory:" {
		q.Add("_pragma", "journal_mode(WAL)")
	}
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	q.Set("_time_format", "sqlite")
	return path + "?" + q.Encode()
}

// mysqlDSN turns mysql://user:pass@host:port/db?params into the driver's DSN,
// with parseTime, UTC and utf8mb4 as Rails uses them, and clientFoundRows so
// RowsAffected counts matched rows (an UPDATE that changes nothing still
// proves the row exists).
func mysqlDSN(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("database url %q: %w", secreturl.Redact(raw), secreturl.ParseError(err))
	}
	if u.Host == "" {
		return "", fmt.Errorf("database url %q: missing host", secreturl.Redact(raw))
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("database url %q: want one database name in the path", secreturl.Redact(raw))
	}
	cfg := mysql.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	if u.Port() == "" {
		cfg.Addr = net.JoinHostPort(u.Hostname(), "3306")
	}
	cfg.DBName = name
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.ClientFoundRows = true
	cfg.Params = map[string]string{"charset": "utf8mb4"}
	for k, vs := range u.Query() {
		switch k {
		case "parseTime", "loc", "clientFoundRows":
			continue // our code depends on these
		}
		cfg.Params[k] = vs[len(vs)-1]
	}
	// Known driver options given as params go through the DSN parser so
	// e.g. ?tls=true or ?timeout=5s take effect.
	dsn := cfg.FormatDSN()
	if _, err := mysql.ParseDSN(dsn); err != nil {
		return "", fmt.Errorf("database url %q: %w", secreturl.Redact(raw), err)
	}
	return dsn, nil
}

// Open connects to the database and checks it answers.
func Open(ctx context.Context, cfg DBConfig) (*gorm.DB, error) {
	d, err := cfg.dialector()
	if err != nil {
		return nil, err
	}
	if path, err := sqlitePath(cfg.URL); err == nil && path != ":memory:" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
	}
	db, err := gorm.Open(d, &gorm.Config{
		Logger:  logger.Default.LogMode(logger.Silent),
		NowFunc: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
	})
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", secreturl.Redact(cfg.URL), err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", secreturl.Redact(cfg.URL), err)
	}
	maxOpen := cfg.MaxOpenConns
	if maxOpen <= 0 {
		maxOpen = DefaultMaxOpenConns
	}
	if cfg.URL == "sqlite::memory:" {
		// Every connection to :memory: is a different database: keep one.
		maxOpen = 1
	}
	maxIdle := cfg.MaxIdleConns
	if maxIdle <= 0 || maxIdle > maxOpen {
		maxIdle = maxOpen
	}
	lifetime := cfg.ConnMaxLifetime
	if lifetime <= 0 {
		lifetime = DefaultConnMaxLifetime
	}
	sqlDB.SetMaxOpenConns(maxOpen)
	sqlDB.SetMaxIdleConns(maxIdle)
	sqlDB.SetConnMaxLifetime(lifetime)
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("open database %s: %w", secreturl.Redact(cfg.URL), err)
	}
	return db, nil
}

// Close closes the connection pool behind db.
func Close(db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// oldColumns are the columns older Pallarel versions added to the Rails
// tables; Migrate moves their data to Pallarel's own tables once and drops
// them, so the Rails tables are the app's db/schema.rb again.
var oldColumns = map[string][]string{
	reportTable: ownReportColumns,
	statusTable: ownRunColumns,
}

// createTables holds the DDL Rails 8 generates from the app's db/schema.rb
// (with the migration that added force_shutdown_at) for each dialect:
// these tables are the app's, exactly; Pallarel's state is in ownTables.
var createTables = map[string]map[string][]string{
	"sqlite": {
		reportTable: {
			`CREATE TABLE IF NOT EXISTS "client_reports" ("id" integer PRIMARY KEY AUTOINCREMENT NOT NULL, "security_hash" varchar, "deleted_at" datetime(6), "report_type" integer DEFAULT 0 NOT NULL, "count" integer DEFAULT 0 NOT NULL, "file" varchar, "status" integer DEFAULT 0 NOT NULL, "created_at" datetime(6) NOT NULL, "updated_at" datetime(6) NOT NULL, "token" varchar)`,
		},
		statusTable: {
			`CREATE TABLE IF NOT EXISTS "csv_processing_statuses" ("id" integer PRIMARY KEY AUTOINCREMENT NOT NULL, "token" varchar NOT NULL, "total_count" integer DEFAULT 0 NOT NULL, "done_count" integer DEFAULT 0 NOT NULL, "queue_name" varchar, "worker_task_arn" varchar, "worker_started_at" datetime(6), "finalized_at" datetime(6), "created_at" datetime(6) NOT NULL, "updated_at" datetime(6) NOT NULL, "force_shutdown_at" datetime(6))`,
			`CREATE UNIQUE INDEX IF NOT EXISTS "index_csv_processing_statuses_on_token" ON "csv_processing_statuses" ("token")`,
		},
	},
	"mysql": {
		reportTable: {
			"CREATE TABLE IF NOT EXISTS `client_reports` (`id` bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, `security_hash` varchar(255), `deleted_at` datetime(6), `report_type` int DEFAULT 0 NOT NULL, `count` int DEFAULT 0 NOT NULL, `file` varchar(255), `status` int DEFAULT 0 NOT NULL, `created_at` datetime(6) NOT NULL, `updated_at` datetime(6) NOT NULL, `token` varchar(255)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
		},
		statusTable: {
			"CREATE TABLE IF NOT EXISTS `csv_processing_statuses` (`id` bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, `token` varchar(255) NOT NULL, `total_count` int DEFAULT 0 NOT NULL, `done_count` int DEFAULT 0 NOT NULL, `queue_name` varchar(255), `worker_task_arn` varchar(255), `worker_started_at` datetime(6), `finalized_at` datetime(6), `created_at` datetime(6) NOT NULL, `updated_at` datetime(6) NOT NULL, `force_shutdown_at` datetime(6), UNIQUE INDEX `index_csv_processing_statuses_on_token` (`token`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
		},
	},
	"postgres": {
		reportTable: {
			`CREATE TABLE IF NOT EXISTS "client_reports" ("id" bigserial primary key, "security_hash" character varying, "deleted_at" timestamp(6), "report_type" integer DEFAULT 0 NOT NULL, "count" integer DEFAULT 0 NOT NULL, "file" character varying, "status" integer DEFAULT 0 NOT NULL, "created_at" timestamp(6) NOT NULL, "updated_at" timestamp(6) NOT NULL, "token" character varying)`,
		},
		statusTable: {
			`CREATE TABLE IF NOT EXISTS "csv_processing_statuses" ("id" bigserial primary key, "token" character varying NOT NULL, "total_count" integer DEFAULT 0 NOT NULL, "done_count" integer DEFAULT 0 NOT NULL, "queue_name" character varying, "worker_task_arn" character varying, "worker_started_at" timestamp(6), "finalized_at" timestamp(6), "created_at" timestamp(6) NOT NULL, "updated_at" timestamp(6) NOT NULL, "force_shutdown_at" timestamp(6))`,
			`CREATE UNIQUE INDEX IF NOT EXISTS "index_csv_processing_statuses_on_token" ON "csv_processing_statuses" ("token")`,
		},
	},
}

// tableOrder fixes the order Migrate visits tables in.
var tableOrder = []string{reportTable, statusTable}

// Migrate creates the two Rails tables with the app's schema when absent
// (and leaves them alone when present), creates Pallarel's own tables,
// and, once, moves what older Pallarel versions kept in columns added to
// the Rails tables into its own tables and drops those columns. Processes
// that start together
// (a server and its workers on a fresh database) take turns: the whole
// migration runs under a database-wide lock (withMigrationLock), so the
// second one finds the schema made and does nothing.
func Migrate(ctx context.Context, db *gorm.DB) error {
	db = db.WithContext(ctx)
	dialect := db.Dialector.Name()
	ddl, ok := createTables[dialect]
	if !ok {
		return fmt.Errorf("migrate: unsupported dialect %q", dialect)
	}
	return withMigrationLock(db, dialect, func(db *gorm.DB) error {
		return migrate(db, dialect, ddl)
	})
}

// migrationLockKey names the lock Migrate holds: a PostgreSQL advisory
// lock key (any fixed bigint; "pallarel" in ASCII) and a MySQL lock name.
const (
	migrationLockKey  int64 = 0x70616c6c6172656c
	migrationLockName       = "pallarel.migrate"
	// migrationLockWait bounds the wait for another process's migration
	// (MySQL's GET_LOCK needs a timeout; PostgreSQL waits on ctx).
	migrationLockWait = 5 * time.Minute
)

// withMigrationLock runs fn while no other process migrates the same
// database:
//   - PostgreSQL: one transaction holding pg_advisory_xact_lock (DDL is
//     transactional there, so a failed migration also leaves nothing half made);
//   - MySQL/MariaDB: GET_LOCK on one connection, released after (DDL
//     commits implicitly, so a transaction would not help);
//   - SQLite: BEGIN IMMEDIATE on one connection, so the transaction holds
//     the file's write lock from its start and others wait for it through
//     busy_timeout. (Spelled out: the driver, glebarez/go-sqlite v1.21,
//     ignores the DSN's _txlock when _time_format is set, so db.Transaction
//     would begin DEFERRED and a second migrator's upgrade to writer fails
//     at once with SQLITE_BUSY_SNAPSHOT.)
func withMigrationLock(db *gorm.DB, dialect string, fn func(*gorm.DB) error) error {
	switch dialect {
	case "postgres":
		return db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", migrationLockKey).Error; err != nil {
				return fmt.Errorf("migrate: lock: %w", err)
			}
			return fn(tx)
		})
	case "mysql":
		return db.Connection(func(conn *gorm.DB) (err error) {
			var got *int
			// MySQL's lock names are server-wide: one per database.
			name := migrationLockName
			if err := conn.Raw("SELECT CONCAT(?, DATABASE())", name+".").Scan(&name).Error; err != nil {
				return fmt.Errorf("migrate: lock: %w", err)
			}
			name = name[:min(len(name), 64)] // GET_LOCK's limit
			if err := conn.Raw("SELECT GET_LOCK(?, ?)", name, int(migrationLockWait.Seconds())).Scan(&got).Error; err != nil {
				return fmt.Errorf("migrate: lock: %w", err)
			}
			if got == nil || *got != 1 {
				return fmt.Errorf("migrate: lock %s: another process held it for %v", name, migrationLockWait)
			}
			defer func() {
				// A new context: the lock must go even when ctx ended.
				if rerr := conn.WithContext(context.Background()).Exec("SELECT RELEASE_LOCK(?)", name).Error; rerr != nil && err == nil {
					err = fmt.Errorf("migrate: unlock: %w", rerr)
				}
			}()
			return fn(conn)
		})
	default:
		return db.Connection(func(conn *gorm.DB) error {
			if err := conn.Exec("BEGIN IMMEDIATE").Error; err != nil {
				return fmt.Errorf("migrate: lock: %w", err)
			}
			if err := fn(conn); err != nil {
				_ = conn.WithContext(context.Background()).Exec("ROLLBACK").Error
				return err
			}
			if err := conn.Exec("COMMIT").Error; err != nil {
				_ = conn.WithContext(context.Background()).Exec("ROLLBACK").Error
				return fmt.Errorf("migrate: commit: %w", err)
			}
			return nil
		})
	}
}

// migrate makes what is missing; the caller holds the migration lock.
func migrate(db *gorm.DB, dialect string, ddl map[string][]string) error {
	// Each statement starts afresh, and none opens a transaction of its
	// own: the migration lock may be one (SQLite's BEGIN IMMEDIATE).
	db = db.Session(&gorm.Session{NewDB: true, SkipDefaultTransaction: true})
	m := db.Migrator()
	for _, table := range tableOrder {
		if !m.HasTable(table) {
			for _, stmt := range ddl[table] {
				if err := db.Exec(stmt).Error; err != nil {
					return fmt.Errorf("migrate: create %s: %w", table, err)
				}
			}
		}
	}
	for _, table := range []string{runsTable, reportsTable} {
		for _, stmt := range ownTables[dialect][table] {
			if err := db.Exec(stmt).Error; err != nil {
				return fmt.Errorf("migrate: create %s: %w", table, err)
			}
		}
	}
	return moveOldColumns(db, dialect)
}

// moveOldColumns copies the data of the columns older Pallarel versions
// added to the Rails tables (oldColumns) into pallarel_reports and
// pallarel_runs, archives the runs those versions ended (their status rows
// move to pallarel_runs, as a run's end does now), turns their ” task
// ARNs into the app's NULL, and drops the columns. Each step is safe to
// repeat, so a migration cut short (MySQL's DDL is not transactional) is
// finished by the next start.
func moveOldColumns(db *gorm.DB, dialect string) error {
	m := db.Migrator()
	present := func(table string) []string {
		var cols []string
		for _, c := range oldColumns[table] {
			if m.HasColumn(table, c) {
				cols = append(cols, c)
			}
		}
		return cols
	}
	insertIgnore := map[string]string{"sqlite": "INSERT OR IGNORE INTO", "mysql": "INSERT IGNORE INTO", "postgres": "INSERT INTO"}[dialect]
	onConflict := map[string]string{"postgres": " ON CONFLICT DO NOTHING"}[dialect]
	value := func(c string) string {
		switch c {
		case "failed_count", "launch_attempts", "split_bytes_read", "split_bytes_total", "split_rows":
			return "COALESCE(" + quote(dialect, c) + ", 0)"
		}
		return quote(dialect, c)
	}
	if cols := present(reportTable); len(cols) > 0 {
		var sel, ins, nonNull []string
		for _, c := range cols {
			ins = append(ins, quote(dialect, c))
			sel = append(sel, value(c))
			nonNull = append(nonNull, quote(dialect, c)+" IS NOT NULL")
		}
		stmt := fmt.Sprintf("%s %s (report_id, %s) SELECT id, %s FROM %s WHERE %s%s", insertIgnore, quote(dialect, reportsTable),
			strings.Join(ins, ", "), strings.Join(sel, ", "), quote(dialect, reportTable), strings.Join(nonNull, " OR "), onConflict)
		if err := db.Exec(stmt).Error; err != nil {
			return fmt.Errorf("migrate: move client_reports columns to %s: %w", reportsTable, err)
		}
	}
	if cols := present(statusTable); len(cols) > 0 {
		var sel, ins []string
		for _, c := range cols {
			ins = append(ins, quote(dialect, c))
			sel = append(sel, value(c))
		}
		stmt := fmt.Sprintf("%s %s (token, %s) SELECT token, %s FROM %s%s", insertIgnore, quote(dialect, runsTable),
			strings.Join(ins, ", "), strings.Join(sel, ", "), quote(dialect, statusTable), onConflict)
		if err := db.Exec(stmt).Error; err != nil {
			return fmt.Errorf("migrate: move csv_processing_statuses columns to %s: %w", runsTable, err)
		}
		if err := db.Exec("UPDATE " + quote(dialect, statusTable) + " SET worker_task_arn = NULL WHERE worker_task_arn = ''").Error; err != nil {
			return fmt.Errorf("migrate: NULL task ARNs: %w", err)
		}
		if contains(cols, "ended_at") {
			var ended []string
			if err := db.Table(statusTable).Where("ended_at IS NOT NULL AND finalized_at IS NOT NULL").Pluck("token", &ended).Error; err != nil {
				return fmt.Errorf("migrate: list ended runs: %w", err)
			}
			st := NewStore(db)
			for _, token := range ended {
				if err := st.archiveStatus(db, token); err != nil {
					return fmt.Errorf("migrate: %w", err)
				}
			}
		}
	}
	for _, table := range tableOrder {
		for _, c := range present(table) {
			if err := db.Exec(fmt.Sprintf("ALTER TABLE %s DROP COLUMN %s", quote(dialect, table), quote(dialect, c))).Error; err != nil {
				return fmt.Errorf("migrate: drop %s.%s (moved to Pallarel's tables): %w", table, c, err)
			}
		}
	}
	return nil
}

func quote(dialect, name string) string {
	if dialect == "mysql" {
		return "`" + name + "`"
	}
	return `"` + name + `"`
}

// ErrNotFound is returned (wrapped) when a report or status row is missing.
var ErrNotFound = errors.New("record not found")

// notFound maps gorm's not-found error to ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}
