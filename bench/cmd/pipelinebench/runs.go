package main

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
)

// runRuns measures what issue 8 asks of a run's footprint and sharing:
//
//	-mode redismem    one upload; Redis used_memory sampled every 100 ms,
//	                  peak above the baseline before the upload, and the
//	                  token worker's peak RSS (it runs the finalizer)
//	-mode concurrent  -uploads uploads at once, each with its own token
//	                  worker launched by the pipeline (LAUNCHER=local);
//	                  total rows/s from the first upload to the last ZIP
//
// Workers are launched by the pipeline itself in both modes, as in
// production.
func runRuns(args []string) error {
	fs := flag.NewFlagSet("runs", flag.ContinueOnError)
	bin := fs.String("bin", "", "directory holding the server and worker binaries")
	file := fs.String("csv", "", "CSV to upload (each upload sends it)")
	rows := fs.Int("rows", 0, "data rows in the CSV")
	mode := fs.String("mode", "redismem", "redismem or concurrent")
	uploads := fs.Int("uploads", 1, "concurrent uploads (concurrent mode)")
	conc := fs.Int("c", 10, "concurrency of each token worker")
	name := fs.String("name", "", "label of this configuration")
	deadline := fs.Duration("deadline", 30*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bin == "" || *file == "" || *rows == 0 || *name == "" {
		return fmt.Errorf("runs needs -bin, -csv, -rows and -name")
	}
	c, err := newCluster(*bin,
		"LAUNCHER=local",
		"LOCAL_WORKER_COMMAND="+filepath.Join(*bin, "worker")+" -q {queue} -c "+strconv.Itoa(*conc)+" --idle-timeout 1m",
	)
	if err != nil {
		return err
	}
	defer c.close()
	if _, err := c.worker("report-worker", 5, "report", "default"); err != nil {
		return err
	}
	base, err := usedMemory(c)
	if err != nil {
		return err
	}
	var peak int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if m, err := usedMemory(c); err == nil {
				peak = max(peak, m)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), *deadline)
	defer cancel()
	n := 1
	if *mode == "concurrent" {
		n = *uploads
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	var tokens []string
	var mu sync.Mutex
	for i := 0; i < n; i++ {
		wg.Go(func() {
			up, err := c.upload(ctx, *file, "text")
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			tokens = append(tokens, up.Token)
			mu.Unlock()
			for {
				st, err := c.status(up.Token)
				if err != nil {
					errs <- err
					return
				}
				if st.State == "completed" || st.State == "failed" {
					if st.State != "completed" || st.DoneCount != *rows {
						errs <- fmt.Errorf("run %s ended %+v", up.Token, st)
					}
					return
				}
				if ctx.Err() != nil {
					errs <- fmt.Errorf("run %s not finished in %s: %+v", up.Token, *deadline, st)
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	close(stop)
	<-sampled
	close(errs)
	for err := range errs {
		if err != nil {
			return fmt.Errorf("%s: %w\nreport worker:\n%s", *name, err, c.logTail("report-worker"))
		}
	}
	total := n * *rows
	fmt.Printf("RESULT runs name=%s mode=%s uploads=%d rows_each=%d c=%d elapsed_s=%.3f rate=%.0f redis_base_mb=%.1f redis_peak_mb=%.1f redis_above_base_mb=%.1f\n",
		*name, *mode, n, *rows, *conc, elapsed.Seconds(), float64(total)/elapsed.Seconds(),
		mb(base), mb(peak), mb(peak-base))
	c.printRSS("runs", *name)
	return nil
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// usedMemory reads Redis's used_memory.
func usedMemory(c *cluster) (int64, error) {
	info, err := redis.String(c.do("INFO", "memory"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO memory has no used_memory")
}
