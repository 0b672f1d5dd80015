// Package modelstest gives tests a database of their own.
package modelstest

import (
	"context"
	"path/filepath"
	"testing"

	"gorm.io/gorm"

	"github.com/pallarel/pallarel/models"
)

// SQLite opens a migrated SQLite database in a temporary directory of tb,
// closed when tb ends.
func SQLite(tb testing.TB) *gorm.DB {
	tb.Helper()
	ctx := context.Background()
	gdb, err := models.Open(ctx, models.DBConfig{URL: "sqlite://" + filepath.Join(tb.TempDir(), "test.sqlite3")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { models.Close(gdb) })
	if err := models.Migrate(ctx, gdb); err != nil {
		tb.Fatal(err)
	}
	return gdb
}
