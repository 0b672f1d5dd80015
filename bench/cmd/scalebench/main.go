// Command scalebench measures a run spread over workers (issue 21 item 3):
// one run of -rows rows, each taking a fixed -sleep (internal/sleepworker's
// "sleep" report type, so cores do not limit it), on a `report` worker
// process whose supervisor launches the run's token workers itself (local
// processes, -c rows each at once), for each count in -workers. For a
// count N the run may have N workers (MAX_WORKERS_PER_RUN) and its target
// (RUN_TARGET_DURATION) is what N workers at the ideal rate need, so the
// run must grow to N to meet it. It prints one Markdown row per count:
// rows/s against the ideal (N × c / sleep), the time to N workers, and the
// run's time against its target. bench/scale.sh builds and runs it.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/storage"
)

func main() {
	rows := flag.Int("rows", 200_000, "rows of the run")
	counts := flag.String("workers", "1,2,4,8", "worker counts to measure")
	conc := flag.Int("c", 10, "rows one worker runs at once")
	sleep := flag.Duration("sleep", 5*time.Millisecond, "time each row takes")
	bin := flag.String("worker-bin", "", "internal/sleepworker binary (required)")
	redisURL := flag.String("redis-url", "", "a Redis for the runs, flushed before each (required)")
	flag.Parse()
	if *bin == "" || *redisURL == "" {
		fmt.Fprintln(os.Stderr, "scalebench: -worker-bin and -redis-url are required")
		os.Exit(2)
	}
	fmt.Printf("| workers | rows | rows/s | ideal rows/s | of ideal | time to N workers | run time | target | peak workers |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "scalebench: bad count %q\n", f)
			os.Exit(2)
		}
		r, err := measure(*bin, *redisURL, *rows, n, *conc, *sleep)
		if err != nil {
			fmt.Fprintln(os.Stderr, "scalebench:", err)
			os.Exit(1)
		}
		ideal := float64(n**conc) / sleep.Seconds()
		rate := float64(*rows) / r.run.Seconds()
		toN := "never"
		if r.toN > 0 {
			toN = r.toN.Round(100 * time.Millisecond).String()
		}
		fmt.Printf("| %d | %d | %.0f | %.0f | %.2f | %s | %s | %s | %d |\n", n, *rows, rate, ideal, rate/ideal,
			toN, r.run.Round(100*time.Millisecond), r.target.Round(100*time.Millisecond), r.peak)
	}
}

type result struct {
	run, target, toN time.Duration
	peak             int
}

func measure(bin, redisURL string, rows, n, conc int, sleep time.Duration) (result, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "scalebench-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	pool, err := sidekiq.NewPool(redisURL, 10)
	if err != nil {
		return result{}, err
	}
	defer pool.Close()
	c := pool.Get()
	_, err = c.Do("FLUSHDB")
	c.Close()
	if err != nil {
		return result{}, fmt.Errorf("flush: %w", err)
	}
	dbURL := "sqlite://" + filepath.Join(dir, "pallarel.sqlite3")
	gdb, err := models.Open(ctx, models.DBConfig{URL: dbURL})
	if err != nil {
		return result{}, err
	}
	defer models.Close(gdb)
	if err := models.Migrate(ctx, gdb); err != nil {
		return result{}, err
	}
	db := models.NewStore(gdb)
	store, err := storage.NewLocal(filepath.Join(dir, "storage"))
	if err != nil {
		return result{}, err
	}
	ideal := float64(n*conc) / sleep.Seconds()
	target := time.Duration(float64(rows) / ideal * float64(time.Second))
	env := append(os.Environ(),
		"REDIS_URL="+redisURL, "DATABASE_URL="+dbURL, "DATA_DIR="+dir, "LOCAL_SAVE=true",
		"STORAGE_DIR="+filepath.Join(dir, "storage"), "LAUNCHER=local",
		"LOCAL_WORKER_COMMAND="+bin+" -q {queue} -c "+strconv.Itoa(conc)+" --idle-timeout 1m",
		"MAX_TOKEN_WORKERS="+strconv.Itoa(n), "MAX_WORKERS_PER_RUN="+strconv.Itoa(n),
		"RUN_TARGET_DURATION="+target.String(), "SUPERVISE_INTERVAL=1s",
		"SLEEPWORKER_ROW_SLEEP="+sleep.String(), "BENCH_LOG_LEVEL=warn")
	var logs bytes.Buffer
	report := exec.Command(bin, "-q", "report", "-q", "default", "-c", "5")
	report.Env = env
	report.Stdout, report.Stderr = &logs, &logs
	report.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := report.Start(); err != nil {
		return result{}, err
	}
	defer func() {
		_ = syscall.Kill(-report.Process.Pid, syscall.SIGTERM)
		_ = report.Wait()
	}()

	token := router.NewToken()
	if err := store.Put(ctx, contract.UploadKey(token), bytes.NewReader(e2etest.CSV(rows))); err != nil {
		return result{}, err
	}
	rep := models.ClientReport{Status: models.ReportPending, ReportType: models.ReportTypeXLSX, Token: token, SourceKey: contract.UploadKey(token), SourceName: "bench.csv"}
	if err := db.CreateReport(ctx, &rep); err != nil {
		return result{}, err
	}
	job, err := jobs.NewSplitJob(sidekiq.Dialect8, contract.SourceRef{SourceKey: contract.UploadKey(token), Token: token}, "sleep", rep.ID)
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	if _, err := sidekiq.NewClient(pool, sidekiq.ClientOptions{}).Push(ctx, job); err != nil {
		return result{}, err
	}
	var r result
	r.target = target
	deadline := start.Add(target*4 + 5*time.Minute)
	for {
		live := liveWorkers(bin)
		r.peak = max(r.peak, live)
		if live >= n && r.toN == 0 {
			r.toN = max(time.Since(start), time.Millisecond)
		}
		got, err := db.ReportByID(ctx, rep.ID)
		if err == nil && got.Status == models.ReportCompleted {
			r.run = time.Since(start)
			break
		}
		if err == nil && got.Status == models.ReportFailed {
			return r, fmt.Errorf("%d workers: the run failed: %s\n%s", n, got.ErrorMessage, logs.String())
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("%d workers: the run did not end in %s\n%s", n, deadline.Sub(start), logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return r, checkCount(ctx, db, token, rows)
}

// checkCount checks every row was recorded done.
func checkCount(ctx context.Context, db *models.Store, token string, rows int) error {
	st, err := db.StatusByToken(ctx, token)
	if err != nil {
		return err
	}
	if st.DoneCount != rows || st.FailedCount != 0 {
		return fmt.Errorf("run %s: %d done, %d failed, want %d done", token, st.DoneCount, st.FailedCount, rows)
	}
	return nil
}

// liveWorkers counts the token worker processes alive (bin on a token queue).
func liveWorkers(bin string) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if args[0] != bin {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
			continue
		}
		for i, a := range args {
			if a == "-q" && i+1 < len(args) && strings.HasPrefix(args[i+1], "report-") {
				n++
			}
		}
	}
	return n
}
