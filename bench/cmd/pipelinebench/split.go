package main

import (
	"github.com/pallarel/pallarel/bench/internal/benchrun"

	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// runSplit uploads a big CSV and times SplitCsvJob, sampling the report
// worker's RSS. No token worker runs, so the rows stay queued: only the
// upload and the split are measured.
func runSplit(args []string) error {
	fs := flag.NewFlagSet("split", flag.ContinueOnError)
	bin := fs.String("bin", "", "directory holding the server and worker binaries")
	file := fs.String("csv", "", "CSV to upload")
	rows := fs.Int("rows", 0, "data rows in the CSV")
	name := fs.String("name", "split", "label")
	deadline := fs.Duration("deadline", 10*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	info, err := os.Stat(*file)
	if err != nil {
		return err
	}
	c, err := newCluster(*bin, fmt.Sprintf("MAX_UPLOAD_BYTES=%d", info.Size()+1<<20))
	if err != nil {
		return err
	}
	defer c.close()
	if _, err := c.worker("report-worker", 5, "report", "default"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *deadline)
	defer cancel()
	t0 := time.Now()
	up, err := c.upload(ctx, *file, "text")
	if err != nil {
		return err
	}
	tUp := time.Since(t0)
	var st benchrun.Status
	for {
		// total_count is set once the split has pushed its last row.
		if st, err = c.status(up.Token); err != nil {
			return err
		}
		if st.TotalCount > 0 || st.State == "failed" {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("split not done in %s: %+v\n%s", *deadline, st, c.logTail("report-worker"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	tSplit := time.Since(t0)
	queued, err := redis.Int(c.do("LLEN", "queue:"+up.Queue))
	if err != nil {
		return err
	}
	if st.TotalCount != *rows || queued != *rows+1 {
		return fmt.Errorf("split: total %d, %d jobs queued; want %d rows + finalize (%+v)", st.TotalCount, queued, *rows, st)
	}
	mem, _ := redis.String(c.do("INFO", "memory"))
	var usedMB float64
	for _, line := range strings.Split(mem, "\r\n") {
		if _, err := fmt.Sscanf(line, "used_memory:%f", &usedMB); err == nil {
			usedMB /= 1 << 20
			break
		}
	}
	split := (tSplit - tUp).Seconds()
	fmt.Printf("RESULT split name=%s rows=%d csv_mb=%.1f upload_s=%.2f split_s=%.2f upload_mb_s=%.1f split_rows_s=%.0f split_mb_s=%.1f redis_used_mb=%.0f\n",
		*name, *rows, float64(info.Size())/(1<<20), tUp.Seconds(), split,
		float64(info.Size())/(1<<20)/tUp.Seconds(), float64(*rows)/split, float64(info.Size())/(1<<20)/split, usedMB)
	c.printRSS("split", *name)
	return nil
}
