package models

import (
	"context"
	"fmt"
	"testing"
	"time"

	"gorm.io/gorm"
)

// schemaLoad is what `rails db:schema:load` runs for the app's
// db/schema.rb (create_table … force: :cascade): both Rails tables dropped
// and made again, empty, with exactly the schema's columns.
var schemaLoad = map[string][]string{
	"sqlite": {
		`DROP TABLE IF EXISTS "client_reports"`,
		`CREATE TABLE "client_reports" ("id" integer PRIMARY KEY AUTOINCREMENT NOT NULL, "security_hash" varchar, "deleted_at" datetime(6), "report_type" integer DEFAULT 0 NOT NULL, "count" integer DEFAULT 0 NOT NULL, "file" varchar, "status" integer DEFAULT 0 NOT NULL, "created_at" datetime(6) NOT NULL, "updated_at" datetime(6) NOT NULL, "token" varchar)`,
		`DROP TABLE IF EXISTS "csv_processing_statuses"`,
		`CREATE TABLE "csv_processing_statuses" ("id" integer PRIMARY KEY AUTOINCREMENT NOT NULL, "token" varchar NOT NULL, "total_count" integer DEFAULT 0 NOT NULL, "done_count" integer DEFAULT 0 NOT NULL, "queue_name" varchar, "worker_task_arn" varchar, "worker_started_at" datetime(6), "finalized_at" datetime(6), "created_at" datetime(6) NOT NULL, "updated_at" datetime(6) NOT NULL, "force_shutdown_at" datetime(6))`,
		`CREATE UNIQUE INDEX "index_csv_processing_statuses_on_token" ON "csv_processing_statuses" ("token")`,
	},
	"mysql": {
		"DROP TABLE IF EXISTS `client_reports` CASCADE",
		"CREATE TABLE `client_reports` (`id` bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, `security_hash` varchar(255), `deleted_at` datetime(6), `report_type` int DEFAULT 0 NOT NULL, `count` int DEFAULT 0 NOT NULL, `file` varchar(255), `status` int DEFAULT 0 NOT NULL, `created_at` datetime(6) NOT NULL, `updated_at` datetime(6) NOT NULL, `token` varchar(255))",
		"DROP TABLE IF EXISTS `csv_processing_statuses` CASCADE",
		"CREATE TABLE `csv_processing_statuses` (`id` bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, `token` varchar(255) NOT NULL, `total_count` int DEFAULT 0 NOT NULL, `done_count` int DEFAULT 0 NOT NULL, `queue_name` varchar(255), `worker_task_arn` varchar(255), `worker_started_at` datetime(6), `finalized_at` datetime(6), `created_at` datetime(6) NOT NULL, `updated_at` datetime(6) NOT NULL, `force_shutdown_at` datetime(6), UNIQUE INDEX `index_csv_processing_statuses_on_token` (`token`))",
	},
	"postgres": {
		`DROP TABLE IF EXISTS "client_reports" CASCADE`,
		`CREATE TABLE "client_reports" ("id" bigserial primary key, "security_hash" character varying, "deleted_at" timestamp(6), "report_type" integer DEFAULT 0 NOT NULL, "count" integer DEFAULT 0 NOT NULL, "file" character varying, "status" integer DEFAULT 0 NOT NULL, "created_at" timestamp(6) NOT NULL, "updated_at" timestamp(6) NOT NULL, "token" character varying)`,
		`DROP TABLE IF EXISTS "csv_processing_statuses" CASCADE`,
		`CREATE TABLE "csv_processing_statuses" ("id" bigserial primary key, "token" character varying NOT NULL, "total_count" integer DEFAULT 0 NOT NULL, "done_count" integer DEFAULT 0 NOT NULL, "queue_name" character varying, "worker_task_arn" character varying, "worker_started_at" timestamp(6), "finalized_at" timestamp(6), "created_at" timestamp(6) NOT NULL, "updated_at" timestamp(6) NOT NULL, "force_shutdown_at" timestamp(6))`,
		`CREATE UNIQUE INDEX "index_csv_processing_statuses_on_token" ON "csv_processing_statuses" ("token")`,
	},
}

// oldPallarelColumns are the columns Pallarel used to add to the Rails
// tables (ALTER TABLE … ADD COLUMN at start), per dialect.
var oldPallarelColumns = map[string][][3]string{ // table, column, sqlite/mysql/postgres type
	"client_reports": {
		{"error_message", "text", "text"}, {"source_key", "varchar", "varchar(255)"}, {"source_name", "varchar", "varchar(255)"},
		{"expired_at", "datetime(6)", "datetime(6)"}, {"webhook_url", "text", "text"},
	},
	"csv_processing_statuses": {
		{"failed_count", "integer DEFAULT 0", "int DEFAULT 0"}, {"last_error", "text", "text"}, {"state", "varchar", "varchar(32)"},
		{"state_reason", "text", "text"}, {"ended_at", "datetime(6)", "datetime(6)"}, {"launch_attempts", "integer DEFAULT 0", "int DEFAULT 0"},
		{"source_spec", "text", "text"}, {"split_bytes_read", "integer DEFAULT 0", "bigint DEFAULT 0"},
		{"split_bytes_total", "integer DEFAULT 0", "bigint DEFAULT 0"}, {"split_rows", "integer DEFAULT 0", "int DEFAULT 0"},
	},
}

func exec(t *testing.T, db *gorm.DB, stmts ...string) {
	t.Helper()
	for _, stmt := range stmts {
		if err := db.Exec(stmt).Error; err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
}

func count(t *testing.T, db *gorm.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Raw(query, args...).Row().Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// Go's run state lives in its own tables: `rails db:schema:load` (the
// Rails tables dropped and made again) leaves it, and Go's next start does
// not add a column back to the Rails tables.
func TestSchemaLoadLeavesGoState(t *testing.T) {
	eachDB(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		st, _ := newTestStore(db)
		rep := ClientReport{ReportType: ReportTypePDF, Token: "tok-ended", SourceName: "顧客.csv", WebhookURL: "https://hooks.example/x"}
		if err := st.CreateReport(ctx, &rep); err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateStatus(ctx, "tok-ended", "report-e", 4); err != nil {
			t.Fatal(err)
		}
		if err := st.IncrementFailed(ctx, "tok-ended", 1); err != nil {
			t.Fatal(err)
		}
		if err := st.SetSourceSpec(ctx, "tok-ended", `{"key":"uploads/x"}`); err != nil {
			t.Fatal(err)
		}
		if won, err := st.EndRun(ctx, "tok-ended", RunFailed, "row 2 died"); err != nil || !won {
			t.Fatalf("EndRun = %v, %v", won, err)
		}
		exec(t, db, schemaLoad[db.Dialector.Name()]...)
		for range 2 {
			if err := Migrate(ctx, db); err != nil {
				t.Fatal(err)
			}
		}
		checkColumns(t, db)
		got, err := st.StatusByToken(ctx, "tok-ended")
		if err != nil {
			t.Fatalf("the ended run is gone after schema:load: %v", err)
		}
		if got.RunState() != RunFailed || got.StateReason != "row 2 died" || got.FailedCount != 1 || got.TotalCount != 4 ||
			got.QueueName != "report-e" || got.SourceSpec != `{"key":"uploads/x"}` || got.FinalizedAt == nil {
			t.Errorf("ended run after schema:load = %+v", got)
		}
		// The reports are Rails' data: schema:load emptied client_reports,
		// and Pallarel's columns of a report no longer there are not shown.
		if _, err := st.ReportByToken(ctx, "tok-ended"); err == nil {
			t.Error("a report survived schema:load")
		}
		if n := count(t, db, "SELECT COUNT(*) FROM pallarel_reports WHERE report_id = ?", rep.ID); n != 1 {
			t.Errorf("pallarel_reports rows of report %d: %d, want 1 (left alone)", rep.ID, n)
		}
	})
}

// The app's monitors read worker_task_arn IS NOT NULL as "has a task": Go
// writes NULL where the app does, never ”.
func TestWorkerTaskArnIsNull(t *testing.T) {
	eachDB(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		st, _ := newTestStore(db)
		if _, err := st.CreateStatus(ctx, "tok-n", "report-n", 3); err != nil {
			t.Fatal(err)
		}
		isNull := func(when string) {
			t.Helper()
			if n := count(t, db, "SELECT COUNT(*) FROM csv_processing_statuses WHERE token = 'tok-n' AND worker_task_arn IS NULL"); n != 1 {
				t.Errorf("%s: worker_task_arn IS NULL matches %d rows, want 1", when, n)
			}
		}
		isNull("created")
		if err := st.RecordWorker(ctx, "tok-n", "", time.Now()); err != nil {
			t.Fatal(err)
		}
		isNull("recorded without a task id")
		if err := st.RecordWorker(ctx, "tok-n", "arn:aws:ecs:task/1", time.Now()); err != nil {
			t.Fatal(err)
		}
		if n := count(t, db, "SELECT COUNT(*) FROM csv_processing_statuses WHERE worker_task_arn IS NOT NULL"); n != 1 {
			t.Errorf("recorded task: %d rows with a task, want 1", n)
		}
		if err := st.ClearWorkerTask(ctx, "tok-n"); err != nil {
			t.Fatal(err)
		}
		isNull("cleared")
		if err := st.ReleaseWorkerLaunch(ctx, "tok-n"); err != nil {
			t.Fatal(err)
		}
		if s, _ := st.StatusByToken(ctx, "tok-n"); s.WorkerStartedAt != nil {
			t.Errorf("launch claim kept after release with a NULL task: %+v", s)
		}
	})
}

// A run's end deletes its csv_processing_statuses row, as the app's
// finalizer does (so the app's pages list only runs in flight), and Go
// still reads the ended run from pallarel_runs: by token, in the recent
// list, for late updates, and to reopen it.
func TestEndedRunLeavesRailsTable(t *testing.T) {
	eachDB(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		st, clk := newTestStore(db)
		live, err := st.CreateStatus(ctx, "tok-live", "report-l", 5)
		if err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Second)
		done, err := st.CreateStatus(ctx, "tok-done", "report-d", 3)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.IncrementDone(ctx, "tok-done", 2); err != nil {
			t.Fatal(err)
		}
		if err := st.IncrementFailed(ctx, "tok-done", 1); err != nil {
			t.Fatal(err)
		}
		if err := st.RecordWorker(ctx, "tok-done", "arn:task/d", clk.Now()); err != nil {
			t.Fatal(err)
		}
		if won, err := st.ClaimFinalize(ctx, "tok-done"); err != nil || !won {
			t.Fatalf("ClaimFinalize = %v, %v", won, err)
		}
		if err := st.MarkEnded(ctx, "tok-done", RunCompleted, ""); err != nil {
			t.Fatal(err)
		}
		if n := count(t, db, "SELECT COUNT(*) FROM csv_processing_statuses WHERE token = 'tok-done'"); n != 0 {
			t.Fatalf("the ended run's status row is still in csv_processing_statuses")
		}
		if n := count(t, db, "SELECT COUNT(*) FROM csv_processing_statuses"); n != 1 {
			t.Fatalf("csv_processing_statuses holds %d rows, want the live run only", n)
		}
		got, err := st.StatusByToken(ctx, "tok-done")
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != done.ID || got.RunState() != RunCompleted || got.DoneCount != 2 || got.FailedCount != 1 || got.TotalCount != 3 ||
			got.WorkerTaskArn != "arn:task/d" || got.FinalizedAt == nil || got.EndedAt == nil || !got.CreatedAt.Equal(done.CreatedAt) {
			t.Errorf("ended run = %+v", got)
		}
		// Late writes land on the archived copy; a late row's count does
		// not move the final counts.
		if err := st.IncrementDone(ctx, "tok-done", 1); err != nil {
			t.Fatal(err)
		}
		if err := st.SetForceShutdown(ctx, "tok-done"); err != nil {
			t.Fatal(err)
		}
		if err := st.SetLastError(ctx, "tok-done", "stop task: throttled"); err != nil {
			t.Fatal(err)
		}
		if won, err := st.ClaimFinalize(ctx, "tok-done"); err != nil || won {
			t.Errorf("a second ClaimFinalize of an ended run = %v, %v", won, err)
		}
		if won, err := st.EndRun(ctx, "tok-done", RunCancelled, "late"); err != nil || won {
			t.Errorf("EndRun of an ended run = %v, %v", won, err)
		}
		got, _ = st.StatusByToken(ctx, "tok-done")
		if got.DoneCount != 2 || got.ForceShutdownAt == nil || got.LastError != "stop task: throttled" || got.RunState() != RunCompleted {
			t.Errorf("after late writes = %+v", got)
		}
		// Creating it again (a retried split) does not bring back a row.
		if again, err := st.CreateStatus(ctx, "tok-done", "report-d", 3); err != nil || again.FinalizedAt == nil {
			t.Errorf("CreateStatus of an ended run = %+v, %v", again, err)
		}
		if n := count(t, db, "SELECT COUNT(*) FROM csv_processing_statuses WHERE token = 'tok-done'"); n != 0 {
			t.Errorf("CreateStatus made a status row for an ended run")
		}
		recent, err := st.RecentStatuses(ctx, 10)
		if err != nil || len(recent) != 2 || recent[0].Token != "tok-done" || recent[1].Token != "tok-live" {
			t.Errorf("RecentStatuses = %v, %v", tokens(recent), err)
		}
		unfinished, err := st.UnfinishedStatuses(ctx, 10)
		if err != nil || len(unfinished) != 1 || unfinished[0].ID != live.ID {
			t.Errorf("UnfinishedStatuses = %v, %v", tokens(unfinished), err)
		}
		both, err := st.StatusesByTokens(ctx, []string{"tok-done", "tok-live", "tok-none"})
		if err != nil || len(both) != 2 {
			t.Errorf("StatusesByTokens = %v, %v", tokens(both), err)
		}
		// Reopened (retry of failed rows), it is a live run again, in the
		// Rails table with its old id, where a Ruby row job counts.
		if ok, err := st.ReopenRun(ctx, "tok-done", 2, 0); err != nil || !ok {
			t.Fatalf("ReopenRun = %v, %v", ok, err)
		}
		if n := count(t, db, "SELECT COUNT(*) FROM csv_processing_statuses WHERE token = 'tok-done' AND id = ? AND done_count = 2 AND finalized_at IS NULL AND worker_task_arn IS NULL", done.ID); n != 1 {
			t.Fatalf("reopened run's status row not back in csv_processing_statuses")
		}
		exec(t, db, "UPDATE csv_processing_statuses SET done_count = done_count + 1 WHERE token = 'tok-done'") // as the app's row job
		got, _ = st.StatusByToken(ctx, "tok-done")
		if got.DoneCount != 3 || got.FailedCount != 0 || got.Ended() || got.RunState() != RunProcessing || got.WorkerStartedAt != nil {
			t.Errorf("reopened = %+v", got)
		}
		if ok, err := st.ReopenRun(ctx, "tok-done", 0, 0); err != nil || ok {
			t.Errorf("ReopenRun of a live run = %v, %v", ok, err)
		}
		// A failed run is not reopened.
		if won, err := st.EndRun(ctx, "tok-live", RunFailed, "boom"); err != nil || !won {
			t.Fatalf("EndRun = %v, %v", won, err)
		}
		if ok, err := st.ReopenRun(ctx, "tok-live", 0, 0); err != nil || ok {
			t.Errorf("ReopenRun of a failed run = %v, %v", ok, err)
		}
		if err := st.DeleteStatus(ctx, "tok-live"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.StatusByToken(ctx, "tok-live"); err == nil {
			t.Error("a deleted run is still read")
		}
	})
}

func tokens(rows []CsvProcessingStatus) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Token)
	}
	return out
}

// A database an older Pallarel migrated (its 15 columns added to the Rails
// tables) is moved once at start: the columns' data goes to Pallarel's
// tables, the runs it ended leave csv_processing_statuses, its ” task
// ARNs become NULL, and the Rails tables are the app's schema again.
func TestMigrateMovesOldColumns(t *testing.T) {
	t.Parallel()
	for _, d := range databases {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, cfg := d.open(t)
			dialect := db.Dialector.Name()
			exec(t, db, railsSchema[dialect]...)
			for table, cols := range oldPallarelColumns {
				for _, c := range cols {
					typ := c[1]
					if dialect == "mysql" {
						typ = c[2]
					} else if dialect == "postgres" {
						typ = map[string]string{"datetime(6)": "timestamp(6)", "varchar(255)": "character varying"}[c[2]]
						if typ == "" {
							typ = c[2]
						}
					}
					exec(t, db, fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", quote(dialect, table), quote(dialect, c[0]), typ))
				}
			}
			ts := "'2025-01-02 03:04:05.123456'"
			exec(t, db,
				`INSERT INTO client_reports (security_hash, report_type, count, file, status, token, created_at, updated_at, error_message, source_key, source_name, expired_at, webhook_url) VALUES (NULL, 0, 0, NULL, 3, 'tok-old-live', `+ts+`, `+ts+`, 'disk full', 'uploads/tok-old-live.csv', '名簿.csv', NULL, 'https://h.example/1')`,
				`INSERT INTO client_reports (security_hash, report_type, count, file, status, token, created_at, updated_at) VALUES ('s', 1, 3, 'reports/r.zip', 2, 'tok-rails', `+ts+`, `+ts+`)`,
				`INSERT INTO csv_processing_statuses (token, total_count, done_count, queue_name, worker_task_arn, created_at, updated_at, failed_count, last_error, state, launch_attempts, source_spec, split_bytes_read, split_bytes_total, split_rows) VALUES ('tok-old-live', 10, 4, 'report-l', '', `+ts+`, `+ts+`, 1, 'row 3', 'processing', 2, '{"k":1}', 100, 200, 5)`,
				`INSERT INTO csv_processing_statuses (token, total_count, done_count, queue_name, worker_task_arn, finalized_at, created_at, updated_at, failed_count, state, ended_at) VALUES ('tok-old-ended', 3, 3, 'report-e', 'arn:task/e', `+ts+`, `+ts+`, `+ts+`, 0, 'completed', `+ts+`)`,
				`INSERT INTO csv_processing_statuses (token, total_count, done_count, queue_name, created_at, updated_at) VALUES ('tok-rails', 3, NULL, 'report-r', `+ts+`, `+ts+`)`,
			)
			// Several processes start on it at once.
			errs := make(chan error, 3)
			for range 3 {
				other := mustOpen(t, cfg)
				go func() { errs <- Migrate(ctx, other) }()
			}
			for range 3 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if err := Migrate(ctx, db); err != nil {
				t.Fatal(err)
			}
			checkColumns(t, db)
			st := NewStore(db)
			live, err := st.StatusByToken(ctx, "tok-old-live")
			if err != nil {
				t.Fatal(err)
			}
			if live.FailedCount != 1 || live.LastError != "row 3" || live.State != RunProcessing || live.LaunchAttempts != 2 ||
				live.SourceSpec != `{"k":1}` || live.SplitBytesRead != 100 || live.SplitBytesTotal != 200 || live.SplitRows != 5 ||
				live.DoneCount != 4 || live.TotalCount != 10 || live.WorkerTaskArn != "" {
				t.Errorf("moved live run = %+v", live)
			}
			if n := count(t, db, "SELECT COUNT(*) FROM csv_processing_statuses WHERE worker_task_arn IS NULL"); n != 2 {
				t.Errorf("%d status rows with a NULL task ARN, want 2 ('' made NULL, Rails' NULL kept)", n)
			}
			if n := count(t, db, "SELECT COUNT(*) FROM csv_processing_statuses WHERE token = 'tok-old-ended'"); n != 0 {
				t.Error("the run the old version ended is still in csv_processing_statuses")
			}
			ended, err := st.StatusByToken(ctx, "tok-old-ended")
			if err != nil {
				t.Fatal(err)
			}
			if ended.RunState() != RunCompleted || ended.DoneCount != 3 || ended.WorkerTaskArn != "arn:task/e" || ended.FinalizedAt == nil ||
				ended.EndedAt == nil || ended.CreatedAt.Nanosecond() != 123456000 {
				t.Errorf("moved ended run = %+v", ended)
			}
			rails, err := st.StatusByToken(ctx, "tok-rails")
			if err != nil || rails.DoneCount != 0 || rails.TotalCount != 3 || rails.Ended() {
				t.Errorf("Rails' own run = %+v, %v", rails, err)
			}
			rep, err := st.ReportByToken(ctx, "tok-old-live")
			if err != nil {
				t.Fatal(err)
			}
			if rep.ErrorMessage != "disk full" || rep.SourceKey != "uploads/tok-old-live.csv" || rep.SourceName != "名簿.csv" ||
				rep.WebhookURL != "https://h.example/1" || rep.ExpiredAt != nil || rep.Status != ReportFailed {
				t.Errorf("moved report = %+v", rep)
			}
			if r, err := st.ReportByToken(ctx, "tok-rails"); err != nil || r.File != "reports/r.zip" || r.Count != 3 || r.SourceKey != "" {
				t.Errorf("Rails' own report = %+v, %v", r, err)
			}
			if n := count(t, db, "SELECT COUNT(*) FROM pallarel_reports"); n != 1 {
				t.Errorf("pallarel_reports has %d rows, want 1 (a Rails-only report needs none)", n)
			}
		})
	}
}
