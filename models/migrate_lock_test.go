package models

import (
	"context"
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
				checkColumns(t, db)
				if !db.Migrator().HasIndex("csv_processing_statuses", "index_csv_processing_statuses_on_token") {
					t.Error("missing unique index on csv_processing_statuses.token")
				}
			}
		})
	}
}
