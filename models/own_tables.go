package models

import (
	"context"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

// Pallarel's own tables. The Rails tables keep exactly the app's
// db/schema.rb (`rails db:schema:load` drops anything else, and the app's
// pages and monitors read them); what Pallarel adds lives here, keyed by
// the Rails rows' token and id, so Rails migrations and schema:load leave
// it alone:
//   - pallarel_runs, one row per token: Go's run state (failed_count,
//     state, …) and, once the run has ended, a copy of its
//     csv_processing_statuses row (archived_at set), because the run's end
//     deletes that row as the app's FinalizeReportJob does;
//   - pallarel_reports, one row per client_reports id: error_message,
//     source_key, source_name, expired_at, webhook_url.
const (
	statusTable  = "csv_processing_statuses"
	reportTable  = "client_reports"
	runsTable    = "pallarel_runs"
	reportsTable = "pallarel_reports"
)

// railsStatusColumns are csv_processing_statuses' columns in db/schema.rb.
var railsStatusColumns = []string{"id", "token", "total_count", "done_count", "queue_name", "worker_task_arn",
	"worker_started_at", "finalized_at", "force_shutdown_at", "created_at", "updated_at"}

// ownRunColumns are the run state Pallarel keeps in pallarel_runs.
var ownRunColumns = []string{"failed_count", "last_error", "state", "state_reason", "ended_at", "launch_attempts",
	"source_spec", "split_bytes_read", "split_bytes_total", "split_rows"}

// railsReportColumns are client_reports' columns in db/schema.rb.
var railsReportColumns = []string{"id", "security_hash", "deleted_at", "report_type", "count", "file", "status",
	"created_at", "updated_at", "token"}

// ownReportColumns are what Pallarel keeps per report in pallarel_reports.
var ownReportColumns = []string{"error_message", "source_key", "source_name", "expired_at", "webhook_url"}

// ownTables holds the DDL of Pallarel's tables per dialect. The copy of a
// status row's Rails columns in pallarel_runs (id … updated_at) is only
// meaningful while archived_at is set.
var ownTables = map[string]map[string][]string{
	"sqlite": {
		runsTable: {`CREATE TABLE IF NOT EXISTS "pallarel_runs" ("token" varchar NOT NULL PRIMARY KEY, "id" integer, "total_count" integer, "done_count" integer, "queue_name" varchar, "worker_task_arn" varchar, "worker_started_at" datetime(6), "finalized_at" datetime(6), "force_shutdown_at" datetime(6), "created_at" datetime(6), "updated_at" datetime(6), "archived_at" datetime(6), "failed_count" integer NOT NULL DEFAULT 0, "last_error" text, "state" varchar, "state_reason" text, "ended_at" datetime(6), "launch_attempts" integer NOT NULL DEFAULT 0, "source_spec" text, "split_bytes_read" integer NOT NULL DEFAULT 0, "split_bytes_total" integer NOT NULL DEFAULT 0, "split_rows" integer NOT NULL DEFAULT 0)`,
			`CREATE INDEX IF NOT EXISTS "index_pallarel_runs_on_archived_at" ON "pallarel_runs" ("archived_at")`},
		reportsTable: {`CREATE TABLE IF NOT EXISTS "pallarel_reports" ("report_id" integer NOT NULL PRIMARY KEY, "error_message" text, "source_key" varchar, "source_name" varchar, "expired_at" datetime(6), "webhook_url" text)`},
	},
	"mysql": {
		runsTable:    {"CREATE TABLE IF NOT EXISTS `pallarel_runs` (`token` varchar(255) NOT NULL PRIMARY KEY, `id` bigint, `total_count` int, `done_count` int, `queue_name` varchar(255), `worker_task_arn` varchar(255), `worker_started_at` datetime(6), `finalized_at` datetime(6), `force_shutdown_at` datetime(6), `created_at` datetime(6), `updated_at` datetime(6), `archived_at` datetime(6), `failed_count` int NOT NULL DEFAULT 0, `last_error` text, `state` varchar(32), `state_reason` text, `ended_at` datetime(6), `launch_attempts` int NOT NULL DEFAULT 0, `source_spec` text, `split_bytes_read` bigint NOT NULL DEFAULT 0, `split_bytes_total` bigint NOT NULL DEFAULT 0, `split_rows` int NOT NULL DEFAULT 0, INDEX `index_pallarel_runs_on_archived_at` (`archived_at`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"},
		reportsTable: {"CREATE TABLE IF NOT EXISTS `pallarel_reports` (`report_id` bigint NOT NULL PRIMARY KEY, `error_message` text, `source_key` varchar(255), `source_name` varchar(255), `expired_at` datetime(6), `webhook_url` text) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"},
	},
	"postgres": {
		runsTable: {`CREATE TABLE IF NOT EXISTS "pallarel_runs" ("token" character varying NOT NULL PRIMARY KEY, "id" bigint, "total_count" integer, "done_count" integer, "queue_name" character varying, "worker_task_arn" character varying, "worker_started_at" timestamp(6), "finalized_at" timestamp(6), "force_shutdown_at" timestamp(6), "created_at" timestamp(6), "updated_at" timestamp(6), "archived_at" timestamp(6), "failed_count" integer NOT NULL DEFAULT 0, "last_error" text, "state" character varying, "state_reason" text, "ended_at" timestamp(6), "launch_attempts" integer NOT NULL DEFAULT 0, "source_spec" text, "split_bytes_read" bigint NOT NULL DEFAULT 0, "split_bytes_total" bigint NOT NULL DEFAULT 0, "split_rows" integer NOT NULL DEFAULT 0)`,
			`CREATE INDEX IF NOT EXISTS "index_pallarel_runs_on_archived_at" ON "pallarel_runs" ("archived_at")`},
		reportsTable: {`CREATE TABLE IF NOT EXISTS "pallarel_reports" ("report_id" bigint NOT NULL PRIMARY KEY, "error_message" text, "source_key" character varying, "source_name" character varying, "expired_at" timestamp(6), "webhook_url" text)`},
	},
}

// statusesSQL reads runs as CsvProcessingStatus rows: the live Rails
// rows with Pallarel's state joined, then the ended runs whose Rails row
// is gone (archived in pallarel_runs). filter, when set, is a condition on
// the token applied inside both halves ("%s.token = ?" with the half's
// alias; its arguments are given twice), so a lookup by token uses the
// indexes whatever the optimizer does with a derived UNION (MySQL before
// 8.0.29 does not push conditions into one).
func statusesSQL(filter string) string {
	var live, archived []string
	for _, c := range railsStatusColumns {
		live = append(live, "s."+c)
		archived = append(archived, "r."+c)
	}
	for _, c := range ownRunColumns {
		switch c {
		case "failed_count", "launch_attempts", "split_bytes_read", "split_bytes_total", "split_rows":
			live = append(live, "COALESCE(r."+c+", 0) AS "+c)
		default:
			live = append(live, "r."+c)
		}
		archived = append(archived, "r."+c)
	}
	liveWhere, archivedWhere := "", ""
	if filter != "" {
		liveWhere = " WHERE " + fmt.Sprintf(filter, "s")
		archivedWhere = " AND " + fmt.Sprintf(filter, "r")
	}
	return "(SELECT " + strings.Join(live, ", ") + " FROM csv_processing_statuses s LEFT JOIN pallarel_runs r ON r.token = s.token" + liveWhere +
		" UNION ALL SELECT " + strings.Join(archived, ", ") + " FROM pallarel_runs r WHERE r.archived_at IS NOT NULL" + archivedWhere +
		" AND NOT EXISTS (SELECT 1 FROM csv_processing_statuses s WHERE s.token = r.token)) AS runs"
}

var (
	allStatusesSQL  = statusesSQL("")
	oneStatusSQL    = statusesSQL("%s.token = ?")  // the token twice
	someStatusesSQL = statusesSQL("%s.token IN ?") // the tokens twice
)

// reportsSelect reads client_reports with pallarel_reports joined.
var reportsSelect = func() string {
	cols := []string{"client_reports.*"}
	for _, c := range ownReportColumns {
		cols = append(cols, "pallarel_reports."+c)
	}
	return strings.Join(cols, ", ")
}()

// Statuses is a query over every run, live or ended, as CsvProcessingStatus
// rows (csv_processing_statuses with Pallarel's state, and the runs whose
// Rails row their end removed). Add Where/Order/Find; column names are
// unqualified.
func (s *Store) Statuses(ctx context.Context) *gorm.DB {
	return s.DB.WithContext(ctx).Table(allStatusesSQL)
}

// Reports is a query over client_reports with Pallarel's columns joined,
// as ClientReport rows. Add Where/Order/Find; client_reports' columns are
// unqualified.
func (s *Store) Reports(ctx context.Context) *gorm.DB {
	return s.DB.WithContext(ctx).Table(reportTable).Select(reportsSelect).
		Joins("LEFT JOIN pallarel_reports ON pallarel_reports.report_id = client_reports.id")
}

// splitFields parts an update into the columns of the Rails table (rails)
// and Pallarel's (own). An empty worker_task_arn is written NULL, as the
// app writes it: its monitors read "IS NOT NULL" as "has a task".
func splitFields(fields map[string]any, railsCols []string) (rails, own map[string]any) {
	rails, own = map[string]any{}, map[string]any{}
	for k, v := range fields {
		if k == "worker_task_arn" && v == "" {
			v = nil
		}
		if contains(railsCols, k) {
			rails[k] = v
		} else {
			own[k] = v
		}
	}
	return rails, own
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// insertIgnore inserts a row with key = value into table unless one exists.
func insertIgnore(tx *gorm.DB, table, key string, value any) error {
	var stmt string
	if tx.Dialector.Name() == "mysql" {
		stmt = fmt.Sprintf("INSERT IGNORE INTO `%s` (`%s`) VALUES (?)", table, key)
	} else {
		stmt = fmt.Sprintf(`INSERT INTO "%s" ("%s") VALUES (?) ON CONFLICT ("%s") DO NOTHING`, table, key, key)
	}
	return tx.Exec(stmt, value).Error
}

// updateOwn sets Pallarel's columns of table's row keyed key = value,
// making the row when it is not there yet (a run or report Rails made).
func updateOwn(tx *gorm.DB, table, key string, value any, fields map[string]any) error {
	if len(fields) == 0 {
		return nil
	}
	res := tx.Table(table).Where(key+" = ?", value).Updates(fields)
	if res.Error != nil || res.RowsAffected > 0 {
		return res.Error
	}
	if err := insertIgnore(tx, table, key, value); err != nil {
		return err
	}
	return tx.Table(table).Where(key+" = ?", value).Updates(fields).Error
}

// archiveStatus moves token's live csv_processing_statuses row into
// pallarel_runs (archived_at set) and deletes it, as the app's finalizer
// deletes its status row at a run's end: the app's pages list running
// runs only, and Go still reads the ended run from pallarel_runs. No live
// row: nothing to do.
func (s *Store) archiveStatus(tx *gorm.DB, token string) error {
	var row railsStatus
	res := tx.Where("token = ?", token).Limit(1).Find(&row)
	if res.Error != nil || res.RowsAffected == 0 {
		return res.Error
	}
	copied := map[string]any{
		"id": row.ID, "total_count": row.TotalCount, "done_count": row.DoneCount, "queue_name": row.QueueName,
		"worker_task_arn": row.WorkerTaskArn, "worker_started_at": row.WorkerStartedAt, "finalized_at": row.FinalizedAt,
		"force_shutdown_at": row.ForceShutdownAt, "created_at": row.CreatedAt, "updated_at": row.UpdatedAt,
		"archived_at": s.now(),
	}
	if err := updateOwn(tx, runsTable, "token", token, copied); err != nil {
		return fmt.Errorf("archive status %s: %w", token, err)
	}
	if err := tx.Table(statusTable).Where("token = ?", token).Delete(nil).Error; err != nil {
		return fmt.Errorf("archive status %s: %w", token, err)
	}
	return nil
}

// railsStatus is a csv_processing_statuses row exactly as Rails keeps it
// (worker_task_arn NULL stays NULL).
type railsStatus struct {
	ID              int64      `gorm:"column:id;primaryKey"`
	Token           string     `gorm:"column:token"`
	TotalCount      *int       `gorm:"column:total_count"`
	DoneCount       *int       `gorm:"column:done_count"`
	QueueName       *string    `gorm:"column:queue_name"`
	WorkerTaskArn   *string    `gorm:"column:worker_task_arn"`
	WorkerStartedAt *time.Time `gorm:"column:worker_started_at;serializer:pallarel_time"`
	FinalizedAt     *time.Time `gorm:"column:finalized_at;serializer:pallarel_time"`
	ForceShutdownAt *time.Time `gorm:"column:force_shutdown_at;serializer:pallarel_time"`
	CreatedAt       *time.Time `gorm:"column:created_at;serializer:pallarel_time"`
	UpdatedAt       *time.Time `gorm:"column:updated_at;serializer:pallarel_time"`
}

// TableName is the Rails table.
func (railsStatus) TableName() string { return statusTable }
