package main

import (
	"github.com/pallarel/pallarel/bench/internal/benchrun"

	"archive/zip"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"
)

func runE2E(args []string) error {
	fs := flag.NewFlagSet("e2e", flag.ContinueOnError)
	bin := fs.String("bin", "", "directory holding the server and worker binaries")
	file := fs.String("csv", "", "CSV to upload")
	rows := fs.Int("rows", 0, "data rows in the CSV")
	typ := fs.String("type", "text", "report type")
	name := fs.String("name", "", "label of this configuration")
	workers := fs.Int("workers", 1, "token worker processes")
	conc := fs.Int("c", 10, "concurrency of each token worker")
	load := fs.Duration("load", 0, "after the run, load GET /csv_processing/<token> this long with wrk")
	conns := fs.Int("conns", 50, "wrk connections")
	deadline := fs.Duration("deadline", 10*time.Minute, "give up after this long")
	idle := fs.Duration("idle", 0, "before the upload, measure each running process's CPU per second of idling this long (RESULT idle)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bin == "" || *file == "" || *rows == 0 || *name == "" {
		return fmt.Errorf("e2e needs -bin, -csv, -rows and -name")
	}
	c, err := newCluster(*bin)
	if err != nil {
		return err
	}
	defer c.close()
	if _, err := c.worker("report-worker", 5, "report", "default"); err != nil {
		return err
	}
	if *idle > 0 {
		before := c.cpuByProc()
		time.Sleep(*idle)
		after := c.cpuByProc()
		for proc, v := range after {
			fmt.Printf("RESULT idle name=%s proc=%s secs=%.1f cpu_s_per_s=%.4f\n", *name, proc, idle.Seconds(), (v-before[proc])/idle.Seconds())
		}
	}
	// Commands are counted from here: the upload, split, rows, finalize,
	// heartbeats and this tool's status polls (about 20 a second).
	if _, err := c.do("CONFIG", "RESETSTAT"); err != nil {
		return err
	}
	total0, calls0, err := c.redisStats()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *deadline)
	defer cancel()
	cpu0 := c.cpuByProc()
	t0 := time.Now()
	up, err := c.upload(ctx, *file, *typ)
	if err != nil {
		return err
	}
	tUp := time.Since(t0)
	for i := 1; i <= *workers; i++ {
		if _, err := c.worker(fmt.Sprintf("token-worker-%d", i), *conc, up.Queue); err != nil {
			return err
		}
	}
	var tRows, tZip time.Duration
	var st benchrun.Status
	for {
		st, err = c.status(up.Token)
		if err != nil {
			return err
		}
		if tRows == 0 && st.TotalCount == *rows && st.DoneCount+st.FailedCount >= st.TotalCount {
			tRows = time.Since(t0)
		}
		if st.State == "completed" || st.State == "failed" {
			tZip = time.Since(t0)
			if tRows == 0 {
				tRows = tZip
			}
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: not finished in %s: %+v\nreport worker:\n%s\ntoken worker:\n%s",
				*name, *deadline, st, c.logTail("report-worker"), c.logTail("token-worker-1"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	zipData, err := c.download(up.Token)
	if err != nil {
		return err
	}
	tDL := time.Since(t0)
	// CPU of each process from the upload to the download (a token worker's
	// from its start): the run's own, without the processes' start-up.
	for proc, v := range c.cpuByProc() {
		fmt.Printf("RESULT runcpu name=%s proc=%s secs=%.3f cpu_s=%.2f\n", *name, proc, tDL.Seconds(), v-cpu0[proc])
	}
	total1, calls1, err := c.redisStats()
	if err != nil {
		return err
	}
	entries, err := zipEntries(zipData)
	if err != nil {
		return err
	}
	if st.State != "completed" || st.TotalCount != *rows || st.FailedCount != 0 || entries != *rows+1 {
		return fmt.Errorf("%s: run ended %+v with %d ZIP entries, want %d rows done and %d entries", *name, st, entries, *rows, *rows+1)
	}
	work := (tZip - tUp).Seconds()
	fmt.Printf("RESULT e2e name=%s type=%s rows=%d workers=%d c=%d upload_s=%.3f rows_ended_s=%.3f zip_ready_s=%.3f download_done_s=%.3f zip_mb=%.1f rate=%.0f rate_rows_ended=%.0f\n",
		*name, *typ, *rows, *workers, *conc, tUp.Seconds(), tRows.Seconds(), tZip.Seconds(), tDL.Seconds(),
		float64(len(zipData))/(1<<20), float64(*rows)/work, float64(*rows)/(tRows-tUp).Seconds())
	fmt.Printf("RESULT cmds name=%s rows=%d total=%d per_row=%.2f\n", *name, *rows, total1-total0, float64(total1-total0)/float64(*rows))
	names := make([]string, 0, len(calls1))
	for k := range calls1 {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if d := calls1[k] - calls0[k]; d > 0 {
			fmt.Printf("RESULT cmd name=%s cmd=%s calls=%d per_row=%.4f\n", *name, k, d, float64(d)/float64(*rows))
		}
	}
	c.printRSS("e2e", *name)
	if *load > 0 {
		return loadStatus(c.base+"/csv_processing/"+up.Token, *name, *load, *conns)
	}
	return nil
}

func zipEntries(data []byte) (int, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return 0, fmt.Errorf("read ZIP: %w", err)
	}
	return len(zr.File), nil
}

// loadStatus runs wrk against the JSON status of a finished run and prints
// requests/s and the p50/p99 latency.
func loadStatus(url, name string, d time.Duration, conns int) error {
	out, err := exec.Command("wrk", "-t", "2", "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", int(d.Seconds())),
		"--latency", "-H", "Accept: application/json", url).CombinedOutput()
	if err != nil {
		return fmt.Errorf("wrk: %w: %s", err, out)
	}
	var rps float64
	var p50, p99 string
	non2xx := "0"
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			rps, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "50%":
			p50 = f[1]
		case len(f) == 2 && f[0] == "99%":
			p99 = f[1]
		case strings.HasPrefix(strings.TrimSpace(line), "Non-2xx"):
			non2xx = f[len(f)-1]
		}
	}
	fmt.Printf("RESULT web name=%s conns=%d secs=%d rps=%.0f p50_ms=%.2f p99_ms=%.2f non2xx=%s\n",
		name, conns, int(d.Seconds()), rps, millis(p50), millis(p99), non2xx)
	return nil
}

// millis turns wrk's "1.23ms" / "850.00us" / "1.02s" into milliseconds.
func millis(s string) float64 {
	for _, u := range []struct {
		suffix string
		scale  float64
	}{{"us", 0.001}, {"ms", 1}, {"s", 1000}, {"m", 60000}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f * u.scale
			}
		}
	}
	return -1
}
