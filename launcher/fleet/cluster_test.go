package fleet_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/storage"
)

// The tests here run the real binaries as a deployment does: a report
// worker process (internal/sleepworker: cmd/worker plus the report type
// "sleep", a fixed wait per row) that splits uploads, supervises runs and
// launches token workers through its launcher (local processes, or ECS
// tasks of launcher/ecstest that the test runs as processes), on one Redis,
// one SQLite database and one local store.

var (
	buildOnce sync.Once
	workerBin string
	buildErr  error
)

func sleepWorker(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fleet-sleepworker-")
		if err != nil {
			buildErr = err
			return
		}
		workerBin = filepath.Join(dir, "sleepworker")
		cmd := exec.Command("go", "build", "-o", workerBin, "./internal/sleepworker")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./internal/sleepworker: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return workerBin
}

type cluster struct {
	t     *testing.T
	bin   string
	dir   string
	env   map[string]string
	rdb   *redistest.DB
	db    *models.Store
	store storage.Store
	logs  *e2etest.Buffer
}

func newCluster(t *testing.T, extra map[string]string) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: sleepWorker(t), dir: t.TempDir(), rdb: redistest.New(t), logs: &e2etest.Buffer{}}
	c.env = map[string]string{
		"PATH":                os.Getenv("PATH"),
		"HOME":                c.dir,
		"REDIS_URL":           c.rdb.URL(),
		"DATABASE_URL":        "sqlite://" + filepath.Join(c.dir, "pallarel.sqlite3"),
		"DATA_DIR":            c.dir,
		"LOCAL_SAVE":          "true",
		"STORAGE_DIR":         filepath.Join(c.dir, "storage"),
		"LAUNCHER":            "local",
		"SUPERVISE_INTERVAL":  "250ms",
		"WORKER_LAUNCH_GRACE": "20s",
	}
	for k, v := range extra {
		c.env[k] = v
	}
	ctx := context.Background()
	gdb, err := models.Open(ctx, models.DBConfig{URL: c.env["DATABASE_URL"]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close(gdb) })
	if err := models.Migrate(ctx, gdb); err != nil {
		t.Fatal(err)
	}
	c.db = models.NewStore(gdb)
	if c.store, err = storage.NewLocal(c.env["STORAGE_DIR"]); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker logs:\n%s", c.logs.String())
		}
	})
	return c
}

func (c *cluster) environ(extra map[string]string) []string {
	var out []string
	for k, v := range c.env {
		if _, over := extra[k]; !over {
			out = append(out, k+"="+v)
		}
	}
	for k, v := range extra {
		out = append(out, k+"="+v)
	}
	return out
}

// start runs the sleep worker with args until the test ends (SIGTERM,
// then the wait for its exit).
func (c *cluster) start(args []string, extra map[string]string) *exec.Cmd {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = c.environ(extra)
	cmd.Stdout, cmd.Stderr = c.logs, c.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	c.t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	return cmd
}

// startReportWorker runs the `report` worker: splits, supervisor, launches.
func (c *cluster) startReportWorker() {
	c.start([]string{"-q", "report", "-q", "default", "-c", "5"}, nil)
}

// submit does what an upload does: the CSV in storage, the pending report,
// the SplitCsvJob.
func (c *cluster) submit(rows int, typ string) (token string, reportID int64) {
	c.t.Helper()
	ctx := context.Background()
	token = router.NewToken()
	if err := c.store.Put(ctx, contract.UploadKey(token), bytes.NewReader(e2etest.CSV(rows))); err != nil {
		c.t.Fatal(err)
	}
	rep := models.ClientReport{Status: models.ReportPending, ReportType: models.ReportTypeXLSX, Token: token, SourceKey: contract.UploadKey(token), SourceName: "t.csv"}
	if err := c.db.CreateReport(ctx, &rep); err != nil {
		c.t.Fatal(err)
	}
	job, err := jobs.NewSplitJob(sidekiq.Dialect8, contract.SourceRef{SourceKey: contract.UploadKey(token), Token: token}, typ, rep.ID)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := sidekiq.NewClient(c.rdb.Pool, sidekiq.ClientOptions{}).Push(ctx, job); err != nil {
		c.t.Fatal(err)
	}
	return token, rep.ID
}

// completed reports whether the report ended, failing the test if it failed.
func (c *cluster) completed(id int64) bool {
	c.t.Helper()
	r, err := c.db.ReportByID(context.Background(), id)
	if err != nil {
		return false
	}
	if r.Status == models.ReportFailed {
		c.t.Fatalf("report %d failed: %+v", id, r)
	}
	return r.Status == models.ReportCompleted
}

// checkZip reads the run's ZIP and checks it row by row.
func (c *cluster) checkZip(token string, rows int) {
	c.t.Helper()
	rc, err := c.store.Open(context.Background(), contract.ResultKey(token))
	if err != nil {
		c.t.Fatal(err)
	}
	defer rc.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(rc); err != nil {
		c.t.Fatal(err)
	}
	e2etest.CheckTextReport(c.t, e2etest.ReadZip(c.t, b.Bytes()), rows)
}

// liveWorkers counts this cluster's token worker processes alive now (the
// sleep worker on a token queue, on this cluster's Redis), and by queue.
func (c *cluster) liveWorkers() (int, map[string]int) {
	byQueue := map[string]int{}
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if args[0] != c.bin {
			continue
		}
		// Other tests run the same binary at the same time: only this
		// cluster's workers, by their Redis.
		environ, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if !slices.Contains(strings.Split(string(environ), "\x00"), "REDIS_URL="+c.rdb.URL()) {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
			continue // exited, not yet reaped
		}
		for i, a := range args {
			if a == "-q" && i+1 < len(args) && strings.HasPrefix(args[i+1], "report-") {
				n++
				byQueue[args[i+1]]++
			}
		}
	}
	return n, byQueue
}
