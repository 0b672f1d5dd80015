package models

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"gorm.io/gorm"
)

// TestMigrateConcurrently starts several "processes" (each its own
// connection pool) migrating the same fresh database at once, as a server
// and its workers do when they start together: every one succeeds and the
// schema is made once.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	const processes = 6
	for _, d := range databases {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			_, cfg := d.open(t)
			for round := range 3 { // a race lost once may be won the next time
				if round > 0 {
					// Start again from an empty database.
					db := mustOpen(t, cfg)
					for _, table := range []string{"csv_processing_statuses", "client_reports"} {
						if err := db.Migrator().DropTable(table); err != nil {
							t.Fatal(err)
						}
					}
				}
				dbs := make([]*gorm.DB, processes)
				for i := range dbs {
					dbs[i] = mustOpen(t, cfg)
				}
				start := make(chan struct{})
				errs := make([]error, processes)
				var wg sync.WaitGroup
				for i, db := range dbs {
					wg.Go(func() {
						<-start
						errs[i] = Migrate(context.Background(), db)
					})
				}
				close(start)
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Errorf("round %d, process %d: %v", round, i, err)
					}
				}
				if t.Failed() {
					return
				}
				db := dbs[0]
				want := map[string][]string{
					"client_reports":          {"id", "security_hash", "deleted_at", "report_type", "count", "file", "status", "token", "created_at", "updated_at", "error_message", "source_key", "source_name", "expired_at", "webhook_url"},
					"csv_processing_statuses": {"id", "token", "total_count", "done_count", "queue_name", "worker_task_arn", "worker_started_at", "finalized_at", "force_shutdown_at", "created_at", "updated_at", "failed_count", "last_error", "state", "state_reason", "ended_at", "launch_attempts", "source_spec", "split_bytes_read", "split_bytes_total", "split_rows"},
				}
				for table, cols := range want {
					if got := columnNames(t, db, table); fmt.Sprint(got) != fmt.Sprint(cols) {
						t.Errorf("%s columns = %v, want %v", table, got, cols)
					}
				}
				if !db.Migrator().HasIndex("csv_processing_statuses", "index_csv_processing_statuses_on_token") {
					t.Error("missing unique index on csv_processing_statuses.token")
				}
			}
		})
	}
}
