package retention

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/storage"
)

// TestSweep ages runs past each limit on a real SQLite file and a real
// local store: uploads go first, then results (expired_at set), then the
// run (soft-deleted, status row gone); a run still going is never touched.
func TestSweep(t *testing.T) {
	for _, dbKind := range []string{"sqlite", "mariadb", "postgres"} {
		t.Run(dbKind, func(t *testing.T) {
			t.Parallel()
			testSweep(t, openDB(t, dbKind))
		})
	}
}

// openDB opens a fresh database of kind (a temporary one on the local
// MariaDB or PostgreSQL, dropped at cleanup), with a small pool.
func openDB(t *testing.T, kind string) *gorm.DB {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "pallarel_retention_" + hex.EncodeToString(b)
	var admin, url, create, drop string
	switch kind {
	case "sqlite":
		url = "sqlite://" + filepath.Join(t.TempDir(), "t.db")
	case "mariadb":
		admin, url = "mysql://root@127.0.0.1:3306/test", "mysql://root@127.0.0.1:3306/"+name
		create, drop = "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4", "DROP DATABASE `"+name+"`"
	case "postgres":
		admin, url = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "postgres://postgres@127.0.0.1:5432/"+name+"?sslmode=disable"
		create, drop = `CREATE DATABASE "`+name+`"`, `DROP DATABASE "`+name+`" WITH (FORCE)`
	}
	if admin != "" {
		adb, err := models.Open(ctx, models.DBConfig{URL: admin, MaxOpenConns: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { models.Close(adb) })
		if err := adb.Exec(create).Error; err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := adb.Exec(drop).Error; err != nil {
				t.Errorf("drop %s: %v", name, err)
			}
		})
	}
	gdb, err := models.Open(ctx, models.DBConfig{URL: url, MaxOpenConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close(gdb) })
	return gdb
}

func testSweep(t *testing.T, gdb *gorm.DB) {
	ctx := context.Background()
	if err := models.Migrate(ctx, gdb); err != nil {
		t.Fatal(err)
	}
	st, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	db := models.NewStore(gdb)
	db.Now = func() time.Time { return clock }
	sw, err := New(db, st, Config{Uploads: 24 * time.Hour, Results: 48 * time.Hour, Runs: 96 * time.Hour},
		slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return clock })
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string) {
		if err := st.Put(ctx, key, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(key string) bool {
		_, err := st.Stat(ctx, key)
		if err != nil && !errors.Is(err, storage.ErrNotExist) {
			t.Fatal(err)
		}
		return err == nil
	}
	mkRun := func(done bool) (string, int64) {
		tok := router.NewToken()
		rep := models.ClientReport{Status: models.ReportProcessing, Token: tok, SourceKey: contract.UploadKey(tok), SourceName: "顧客.csv"}
		if err := db.CreateReport(ctx, &rep); err != nil {
			t.Fatal(err)
		}
		if _, err := db.CreateStatus(ctx, tok, "q", 1); err != nil {
			t.Fatal(err)
		}
		put(contract.UploadKey(tok))
		put(contract.TemplateKey(tok))
		put(contract.RowKeyPrefix(tok) + "seg-1")
		if done {
			put(contract.ResultKey(tok))
			if err := db.MarkReportCompleted(ctx, rep.ID, contract.ResultKey(tok), 1); err != nil {
				t.Fatal(err)
			}
		}
		return tok, rep.ID
	}
	done, doneID := mkRun(true)
	running, _ := mkRun(false)

	sweep := func(age time.Duration) Result {
		clock = time.Now().Add(age)
		res, err := sw.Sweep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := sweep(time.Hour); res != (Result{}) {
		t.Fatalf("young runs swept: %+v", res)
	}
	if res := sweep(25 * time.Hour); res != (Result{Uploads: 1}) || exists(contract.UploadKey(done)) || exists(contract.TemplateKey(done)) || !exists(contract.ResultKey(done)) {
		t.Fatalf("after a day: %+v", res)
	}
	if res := sweep(49 * time.Hour); res != (Result{Results: 1}) || exists(contract.ResultKey(done)) || exists(contract.RowKeyPrefix(done)+"seg-1") {
		t.Fatalf("after two days: %+v", res)
	}
	rep, err := db.ReportByID(ctx, doneID)
	if err != nil || rep.ExpiredAt == nil || rep.SourceKey != "" {
		t.Fatalf("report after results expired: %+v %v", rep, err)
	}
	if res := sweep(97 * time.Hour); res != (Result{Runs: 1}) {
		t.Fatalf("after four days: %+v", res)
	}
	rep, _ = db.ReportByID(ctx, doneID)
	if rep.DeletedAt == nil || rep.SourceName != "" {
		t.Fatalf("old run not soft-deleted: %+v", rep)
	}
	if _, err := db.StatusByToken(ctx, done); !errors.Is(err, models.ErrNotFound) {
		t.Fatalf("status row of an old run: %v", err)
	}
	if res := sweep(1000 * time.Hour); res != (Result{}) {
		t.Fatalf("second pass: %+v", res)
	}
	// The unfinished run kept everything.
	for _, k := range []string{contract.UploadKey(running), contract.TemplateKey(running), contract.RowKeyPrefix(running) + "seg-1"} {
		if !exists(k) {
			t.Errorf("%s of a running run was deleted", k)
		}
	}
}
