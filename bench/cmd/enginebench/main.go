// Command enginebench times the Sidekiq engine for bench/engine.sh.
//
//	enginebench push  -redis URL [-n 100000] [-runs 3]
//	    Go sidekiq.Client.PushBulk of n no-op jobs; one RESULT line per run.
//	enginebench drain -redis URL -name NAME [-n 100000] [-runs 3] [-run 1] [-dialect 8] [-dir DIR] -- WORKER ARGS...
//	    Per run: FLUSHDB, bulk-push n Pallarel::NoopJob on queue "bench" and
//	    park them aside, start the worker (it must publish its finished-job
//	    count to "bench:done", as bench/cmd/benchworker and
//	    bench/ruby/jobs.rb do), wait until it is registered, move the jobs
//	    back onto queue:bench in one RENAME and start the timer, stop it when
//	    bench:done reaches n. The worker's VmRSS is sampled every 10 ms.
//	enginebench ackcost -redis URL [-batch 200] [-rounds 500] [-runs 2]
//	    Redis CPU per acknowledgement: LREM from a Lua script (how the fetch
//	    script acknowledged before 2026-11-30 16:45) against plain LREMs
//	    pipelined (how it does now), batches of acknowledgements of jobs in
//	    the order they were fetched, interleaved runs.
//	enginebench report < RESULT-lines
//	    Medians and ratios as Markdown.
//	enginebench freeport
//	    Prints a free TCP port on 127.0.0.1 (for the script's redis-server).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/bench/internal/results"
	"github.com/pallarel/pallarel/sidekiq"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: enginebench push|drain|report [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "push":
		err = runPush(os.Args[2:])
	case "drain":
		err = runDrain(os.Args[2:])
	case "ackcost":
		err = runAckCost(os.Args[2:])
	case "report":
		err = report(os.Stdin, os.Stdout)
	case "freeport":
		err = freePort()
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "enginebench: %v\n", err)
		os.Exit(1)
	}
}

func freePort() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	return nil
}

func noopJobs(n int, queue string) []*sidekiq.Job {
	jobs := make([]*sidekiq.Job, n)
	for i := range jobs {
		jobs[i], _ = sidekiq.NewJob("Pallarel::NoopJob") // no args cannot fail
		jobs[i].Queue = queue
	}
	return jobs
}

func do(pool *redis.Pool, cmd string, args ...any) (any, error) {
	c := pool.Get()
	defer c.Close()
	return c.Do(cmd, args...)
}

func runPush(args []string) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	url := fs.String("redis", "", "Redis URL")
	n := fs.Int("n", 100000, "jobs per run")
	runs := fs.Int("runs", 3, "runs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pool, err := sidekiq.NewPool(*url, 4)
	if err != nil {
		return err
	}
	defer pool.Close()
	client := sidekiq.NewClient(pool, sidekiq.ClientOptions{})
	for run := 1; run <= *runs; run++ {
		if _, err := do(pool, "DEL", "queue:pushbench"); err != nil {
			return err
		}
		jobs := noopJobs(*n, "pushbench") // built before the timer, as Ruby's args array
		start := time.Now()
		if _, err := client.PushBulk(context.Background(), jobs); err != nil {
			return err
		}
		secs := time.Since(start).Seconds()
		l, err := redis.Int(do(pool, "LLEN", "queue:pushbench"))
		if err != nil || l != *n {
			return fmt.Errorf("queue holds %d jobs (%v), want %d", l, err, *n)
		}
		fmt.Printf("RESULT push name=go version=pallarel run=%d jobs=%d secs=%.4f rate=%.0f\n", run, *n, secs, float64(*n)/secs)
	}
	_, err = do(pool, "DEL", "queue:pushbench")
	return err
}

func runDrain(args []string) error {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	url := fs.String("redis", "", "Redis URL")
	name := fs.String("name", "", "label of this worker configuration")
	n := fs.Int("n", 100000, "jobs per run")
	runs := fs.Int("runs", 3, "runs")
	first := fs.Int("run", 1, "number of the first run (for interleaved rounds)")
	dialect := fs.Int("dialect", 8, "Sidekiq format to push (6, 7 or 8)")
	dir := fs.String("dir", "", "working directory of the worker")
	deadline := fs.Duration("deadline", 3*time.Minute, "give up on a run after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 || *name == "" {
		return errors.New("drain needs -name and a worker command after --")
	}
	pool, err := sidekiq.NewPool(*url, 4)
	if err != nil {
		return err
	}
	defer pool.Close()
	client := sidekiq.NewClient(pool, sidekiq.ClientOptions{Dialect: sidekiq.Dialect(*dialect)})
	for run := *first; run < *first+*runs; run++ {
		if err := drainOnce(pool, client, *url, *name, run, *n, *dir, *deadline, fs.Args()); err != nil {
			return fmt.Errorf("%s run %d: %w", *name, run, err)
		}
	}
	return nil
}

func drainOnce(pool *redis.Pool, client *sidekiq.Client, url, name string, run, n int, dir string, deadline time.Duration, argv []string) error {
	if _, err := do(pool, "FLUSHDB"); err != nil {
		return err
	}
	if _, err := client.PushBulk(context.Background(), noopJobs(n, "bench")); err != nil {
		return err
	}
	if _, err := do(pool, "RENAME", "queue:bench", "bench:parked"); err != nil {
		return err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "REDIS_URL="+url)
	logf, err := os.CreateTemp("", "enginebench-"+name+"-*.log")
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return errors.New("worker ignored SIGTERM for 30s")
		}
	}
	fail := func(err error) error {
		_ = stop()
		return fmt.Errorf("%w (worker log: %s)", err, logf.Name())
	}
	// Ready: the worker has written its heartbeat.
	ready := time.Now().Add(60 * time.Second)
	for {
		k, err := redis.Int(do(pool, "SCARD", "processes"))
		if err != nil {
			return fail(err)
		}
		if k > 0 {
			break
		}
		if time.Now().After(ready) {
			return fail(errors.New("worker did not register within 60s"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // let every processor reach its fetch

	var peakKB int64
	worker0, redis0 := procCPU(cmd.Process.Pid), redisCPU(pool)
	start := time.Now()
	if _, err := do(pool, "RENAME", "bench:parked", "queue:bench"); err != nil {
		return fail(err)
	}
	lastSample := time.Time{}
	for {
		got, err := redis.Int(do(pool, "GET", "bench:done"))
		if err != nil && !errors.Is(err, redis.ErrNil) {
			return fail(err)
		}
		if got >= n {
			break
		}
		if time.Since(lastSample) >= 10*time.Millisecond {
			peakKB = max(peakKB, procStatusKB(cmd.Process.Pid, "VmRSS"))
			lastSample = time.Now()
		}
		if time.Since(start) > deadline {
			return fail(fmt.Errorf("only %d of %d jobs done after %s", got, n, deadline))
		}
		time.Sleep(time.Millisecond)
	}
	secs := time.Since(start).Seconds()
	workerCPU, redisUsed := procCPU(cmd.Process.Pid)-worker0, redisCPU(pool)-redis0
	hwm := procStatusKB(cmd.Process.Pid, "VmHWM")
	left, _ := redis.Int(do(pool, "LLEN", "queue:bench"))
	if err := stop(); err != nil {
		return fmt.Errorf("worker stop: %w (log: %s)", err, logf.Name())
	}
	if left != 0 {
		return fmt.Errorf("queue:bench still holds %d jobs", left)
	}
	fmt.Printf("RESULT drain name=%s run=%d jobs=%d secs=%.4f rate=%.0f rss_peak_kb=%d hwm_kb=%d worker_us_per_job=%.1f redis_us_per_job=%.1f\n",
		name, run, n, secs, float64(n)/secs, peakKB, hwm, workerCPU.Seconds()*1e6/float64(n), redisUsed.Seconds()*1e6/float64(n))
	os.Remove(logf.Name())
	return nil
}

// procStatusKB reads a "kB" field of /proc/PID/status, 0 if unreadable.
func procStatusKB(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			v, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return v
		}
	}
	return 0
}

// report reads RESULT lines (drain, push, redis) and prints medians, the
// Redis ceiling and the ratios the targets are about.
// ackScript removes each of its ARGV from KEYS[1], from the tail, as the
// fetch script's acknowledgement prelude did.
var ackScript = redis.NewScript(1, `for i = 1, #ARGV do redis.call('LREM', KEYS[1], -1, ARGV[i]) end return #ARGV`)

func runAckCost(args []string) error {
	fs := flag.NewFlagSet("ackcost", flag.ExitOnError)
	url := fs.String("redis", "", "Redis URL")
	batch := fs.Int("batch", 200, "acknowledgements per round trip")
	rounds := fs.Int("rounds", 500, "round trips per run")
	runs := fs.Int("runs", 2, "runs of each way, interleaved")
	fs.Parse(args)
	pool := &redis.Pool{Dial: func() (redis.Conn, error) { return redis.DialURL(*url) }}
	defer pool.Close()
	c := pool.Get()
	defer c.Close()
	jobs := make([]any, *batch)
	for i := range jobs {
		j := noopJobs(1, "bench")[0]
		j.JID = fmt.Sprintf("%024d", i)
		b, err := j.Encode()
		if err != nil {
			return err
		}
		jobs[i] = b
	}
	for run := 1; run <= *runs; run++ {
		for _, way := range []string{"lua", "pipelined"} {
			var used time.Duration
			for range *rounds {
				// The in-flight list as fetch leaves it: oldest job at the tail.
				if _, err := c.Do("DEL", "bench:inflight"); err != nil {
					return err
				}
				if _, err := c.Do("LPUSH", append([]any{"bench:inflight"}, jobs...)...); err != nil {
					return err
				}
				before := redisCPU(pool)
				if way == "lua" {
					if _, err := ackScript.Do(c, append([]any{"bench:inflight"}, jobs...)...); err != nil {
						return err
					}
				} else {
					for _, j := range jobs {
						if err := c.Send("LREM", "bench:inflight", -1, j); err != nil {
							return err
						}
					}
					if _, err := c.Do(""); err != nil {
						return err
					}
				}
				used += redisCPU(pool) - before
			}
			if n, _ := redis.Int(c.Do("LLEN", "bench:inflight")); n != 0 {
				return fmt.Errorf("%s: %d acknowledgements missed", way, n)
			}
			fmt.Printf("RESULT ackcost name=%s run=%d acks=%d redis_us_per_ack=%.2f\n",
				way, run, *batch**rounds, used.Seconds()*1e6/float64(*batch**rounds))
		}
	}
	return nil
}

// procCPU is the user+system CPU time of pid and its waited-for children
// (the Ruby peers run under a wrapper), 0 if unreadable.
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 15 {
		return 0
	}
	var ticks int64
	for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, _ := strconv.ParseInt(f[k], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// redisCPU is Redis's used_cpu_user + used_cpu_sys, 0 if unreadable.
func redisCPU(pool *redis.Pool) time.Duration {
	info, err := redis.String(do(pool, "INFO", "cpu"))
	if err != nil {
		return 0
	}
	var secs float64
	for _, line := range strings.Split(info, "\n") {
		for _, k := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), k); ok {
				x, _ := strconv.ParseFloat(v, 64)
				secs += x
			}
		}
	}
	return time.Duration(secs * float64(time.Second))
}

func report(in io.Reader, out io.Writer) error {
	rs, err := results.Parse(in)
	if err != nil {
		return err
	}
	byKey := map[string][]results.Result{}
	var order []string
	for _, r := range rs {
		key := r.Kind + "/" + r.KV["name"]
		if _, ok := byKey[key]; !ok {
			order = append(order, key)
		}
		byKey[key] = append(byKey[key], r)
	}
	med := func(key, field string) float64 {
		var xs []float64
		for _, r := range byKey[key] {
			xs = append(xs, r.Num(field))
		}
		return results.Median(xs)
	}
	runs := func(key, field string) string {
		var s []string
		for _, r := range byKey[key] {
			s = append(s, r.KV[field])
		}
		return strings.Join(s, ", ")
	}

	fmt.Fprintln(out, "### Drain of no-op jobs (jobs/s, median of runs)")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| worker | median jobs/s | runs (jobs/s) | median drain s | peak VmRSS MB (median) | VmHWM MB (median) | worker CPU µs/job (median) | Redis CPU µs/job (median) |")
	fmt.Fprintln(out, "|---|---:|---|---:|---:|---:|---:|---:|")
	for _, k := range order {
		if !strings.HasPrefix(k, "drain/") {
			continue
		}
		fmt.Fprintf(out, "| %s | %.0f | %s | %.2f | %.1f | %.1f | %.1f | %.1f |\n", strings.TrimPrefix(k, "drain/"),
			med(k, "rate"), runs(k, "rate"), med(k, "secs"), med(k, "rss_peak_kb")/1024, med(k, "hwm_kb")/1024,
			med(k, "worker_us_per_job"), med(k, "redis_us_per_job"))
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "### Bulk push of no-op jobs (jobs/s, median of runs)")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| client | median jobs/s | runs (jobs/s) |")
	fmt.Fprintln(out, "|---|---:|---|")
	for _, k := range order {
		if strings.HasPrefix(k, "push/") {
			fmt.Fprintf(out, "| %s | %.0f | %s |\n", strings.TrimPrefix(k, "push/"), med(k, "rate"), runs(k, "rate"))
		}
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "### redis-benchmark (requests/s, median of runs)")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| command | median req/s | runs |")
	fmt.Fprintln(out, "|---|---:|---|")
	for _, k := range order {
		if strings.HasPrefix(k, "redis/") {
			fmt.Fprintf(out, "| %s | %.0f | %s |\n", strings.TrimPrefix(k, "redis/"), med(k, "rps"), runs(k, "rps"))
		}
	}
	rps := func(name string) float64 { return med("redis/"+name, "rps") }
	cycle := func(names ...string) float64 {
		sum := 0.0
		for _, n := range names {
			r := rps(n)
			if r == 0 {
				return 0
			}
			sum += 1 / r
		}
		return 1 / sum
	}
	ceilings := []struct {
		name  string
		value float64
	}{
		{"push+fetch+ack, none pipelined (LPUSH P1 + EVALSHA-LMOVE P1 + LREM P1)", cycle("lpush-P1", "evalsha-fetch-P1", "lrem-P1")},
		{"push+fetch+ack as Pallarel pipelines (LPUSH P100 + EVALSHA-LMOVE P1 + LREM P1)", cycle("lpush-P100", "evalsha-fetch-P1", "lrem-P1")},
		{"fetch+ack only, what a drain costs (EVALSHA-LMOVE P1 + LREM P1)", cycle("evalsha-fetch-P1", "lrem-P1")},
		{"basic fetch cycle (LPUSH P100 + RPOP P1)", cycle("lpush-P100", "rpop-P1")},
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "### Ceiling = 1 / (sum of per-command times) and ratios")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| ceiling | jobs/s |")
	fmt.Fprintln(out, "|---|---:|")
	for _, c := range ceilings {
		fmt.Fprintf(out, "| %s | %.0f |\n", c.name, c.value)
	}
	fmt.Fprintln(out)
	ratio := func(a, b float64) string {
		if b == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	fmt.Fprintln(out, "| ratio | value |")
	fmt.Fprintln(out, "|---|---:|")
	r8, r7, r6 := med("drain/ruby8-c10", "rate"), med("drain/ruby7-c10", "rate"), med("drain/ruby6-c10", "rate")
	for _, g := range []string{"go-reliable-c10", "go-reliable-c50", "go-basic-c10"} {
		gr := med("drain/"+g, "rate")
		if gr == 0 {
			continue
		}
		fmt.Fprintf(out, "| %s / ruby8-c10 | %s |\n", g, ratio(gr, r8))
		fmt.Fprintf(out, "| %s / ruby7-c10 | %s |\n", g, ratio(gr, r7))
		fmt.Fprintf(out, "| %s / ruby6-c10 | %s |\n", g, ratio(gr, r6))
		for i, c := range ceilings[:3] {
			fmt.Fprintf(out, "| %s / ceiling %d | %s |\n", g, i+1, ratio(gr, c.value))
		}
	}
	// CPU per job, worker and Redis together: the comparison that does not
	// depend on how many cores each side can use (Ruby's GVL holds one
	// process to about one).
	cpu := func(name string) float64 {
		return med("drain/"+name, "worker_us_per_job") + med("drain/"+name, "redis_us_per_job")
	}
	for _, g := range []string{"go-reliable-c10", "go-reliable-c50"} {
		if c := cpu(g); c > 0 && cpu("ruby8-c10") > 0 {
			fmt.Fprintf(out, "| ruby8-c10 CPU per job / %s CPU per job (worker + Redis) | %s |\n", g, ratio(cpu("ruby8-c10"), c))
		}
	}
	gp := med("push/go", "rate")
	for _, k := range order {
		if strings.HasPrefix(k, "push/ruby") {
			fmt.Fprintf(out, "| go PushBulk / %s push_bulk | %s |\n", strings.TrimPrefix(k, "push/"), ratio(gp, med(k, "rate")))
		}
	}
	return nil
}
