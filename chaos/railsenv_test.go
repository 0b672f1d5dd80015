package chaos

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pallarel/pallarel/models"
)

// freshMariaDB creates a database of this test's own on the MariaDB at
// 127.0.0.1:3306 (root, no password) and drops it after.
func freshMariaDB(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	admin, err := models.Open(ctx, models.DBConfig{URL: "mysql://root@127.0.0.1:3306/test", MaxOpenConns: 1})
	if err != nil {
		t.Fatalf("MariaDB at 127.0.0.1:3306 is required: %v", err)
	}
	name := fmt.Sprintf("chaos_rails_%d", time.Now().UnixNano())
	if err := admin.Exec("CREATE DATABASE `" + name + "` CHARACTER SET utf8mb4").Error; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := admin.Exec("DROP DATABASE IF EXISTS `" + name + "`").Error; err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
		models.Close(admin)
	})
	return name
}

// readDotenv reads KEY=VALUE lines as a Rails .env (dotenv) holds them:
// blank lines and # comments skipped, values optionally quoted.
func readDotenv(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf(".env line %q", line)
		}
		out = append(out, strings.TrimSpace(k)+"="+strings.Trim(strings.TrimSpace(v), `"'`))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The .env that runs the Rails app's Sidekiq (REDIS_URL a bare host, as
// config/redis.yml takes it; LOCAL_SAVE=false, which the app reads as
// local because it is not blank; DB_* as its database.yml) runs the Go
// server and worker binaries unchanged, and they run an upload to the end
// on MariaDB, whose Rails tables keep the app's columns. The worker used
// to exit 2 on the REDIS_URL, then again on LOCAL_SAVE=false without a
// bucket.
func TestRailsDotenvRunsGoWorker(t *testing.T) {
	dbName := freshMariaDB(t)
	dotenv := filepath.Join(t.TempDir(), ".env")
	body := fmt.Sprintf(`# the Rails app's .env
RAILS_ENV=production
REDIS_URL={redis_addr}
LOCAL_SAVE=false
DB_HOST=127.0.0.1
DB_NAME=%s
DB_USER=root
DB_PASSWORD=
`, dbName)
	if err := os.WriteFile(dotenv, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	// DATABASE_URL blank: the harness's SQLite default must not win over DB_*.
	env := append([]string{"DATABASE_URL=", "LOCAL_SAVE="}, readDotenv(t, dotenv)...)
	c := newCluster(t, env...)
	report := c.worker("report", 2, "report", "default")
	const n = 200
	u := c.upload(makeCSV("E", n), "text")
	tok := c.worker("token", 4, u.Queue)
	s := c.waitFinished(u.Token, 120*time.Second)
	if s.State != "completed" {
		t.Fatalf("run: %+v", s)
	}
	expectIntact(t, c.verify(u.Token, "E", n), 0)
	for _, p := range []*proc{report, tok} {
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v):\n%s", p.name, p.err, tail(p.log.String(), 3000))
		default:
		}
		if log := p.log.String(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, "LOCAL_SAVE=false means LOCAL save") {
			t.Errorf("%s did not warn that LOCAL_SAVE=false means local:\n%s", p.name, tail(log, 2000))
		}
	}
	// The run is in the app's database (DB_*), not in a SQLite file.
	db, err := models.Open(context.Background(), models.DBConfig{URL: "mysql://root@127.0.0.1:3306/" + dbName, MaxOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer models.Close(db)
	var status, count int
	if err := db.Raw("SELECT status, count FROM client_reports WHERE token = ?", u.Token).Row().Scan(&status, &count); err != nil {
		t.Fatalf("client_reports row of %s in MariaDB %s: %v", u.Token, dbName, err)
	}
	if status != int(models.ReportCompleted) || count != n {
		t.Errorf("client_reports: status %d count %d, want %d and %d", status, count, models.ReportCompleted, n)
	}
	// The app's tables are the app's schema.rb, and the ended run's status
	// row is gone as the app's finalizer deletes it (its pages list runs
	// in flight), while the run page above still read it from Go's table.
	for table, want := range map[string]string{
		"client_reports":          "count,created_at,deleted_at,file,id,report_type,security_hash,status,token,updated_at",
		"csv_processing_statuses": "created_at,done_count,finalized_at,force_shutdown_at,id,queue_name,token,total_count,updated_at,worker_started_at,worker_task_arn",
	} {
		var got string
		if err := db.Raw("SELECT GROUP_CONCAT(column_name ORDER BY column_name) FROM information_schema.columns WHERE table_schema = ? AND table_name = ?", dbName, table).Row().Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s columns %s, want exactly the app's %s", table, got, want)
		}
	}
	var left int
	if err := db.Raw("SELECT COUNT(*) FROM csv_processing_statuses WHERE token = ?", u.Token).Row().Scan(&left); err != nil || left != 0 {
		t.Errorf("csv_processing_statuses rows of the ended run: %d (%v), want 0", left, err)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "pallarel.sqlite3")); err == nil {
		t.Errorf("a SQLite database was made beside the MariaDB one")
	}
}
