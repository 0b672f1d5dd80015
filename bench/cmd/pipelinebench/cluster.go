package main

import (
	"github.com/pallarel/pallarel/bench/internal/benchrun"

	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gomodule/redigo/redis"
)

// proc is one process of the cluster with its RSS sampled every 20 ms.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}

	mu      sync.Mutex
	peakRSS int64 // KiB, highest VmRSS sample
	hwm     int64 // KiB, VmHWM read just before the stop
}

func (p *proc) sample(stop <-chan struct{}) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		rss, _ := benchrun.StatusKiB(p.cmd.Process.Pid, "VmRSS:")
		p.mu.Lock()
		p.peakRSS = max(p.peakRSS, rss)
		p.mu.Unlock()
		select {
		case <-stop:
			return
		case <-p.done:
			return
		case <-t.C:
		}
	}
}

// peaks returns the sampled peak VmRSS and the kernel's VmHWM in MiB.
func (p *proc) peaks() (rss, hwm float64) {
	if h, err := benchrun.StatusKiB(p.cmd.Process.Pid, "VmHWM:"); err == nil {
		p.mu.Lock()
		p.hwm = max(p.hwm, h)
		p.mu.Unlock()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return float64(p.peakRSS) / 1024, float64(p.hwm) / 1024
}

// cpuSeconds is the user+system CPU time pid has used, from /proc/pid/stat
// (in clock ticks of 1/100 s, as Linux reports them on x86_64 and arm64).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100, nil
}

// cluster is one pipeline: a private redis-server, the web server and workers.
type cluster struct {
	bin, dir string
	env      []string
	base     string
	pool     *redis.Pool
	stopRSS  chan struct{}

	mu    sync.Mutex
	procs []*proc
}

func newCluster(binDir string, extraEnv ...string) (*cluster, error) {
	dir, err := os.MkdirTemp("", "pipelinebench-")
	if err != nil {
		return nil, err
	}
	c := &cluster{bin: binDir, dir: dir, stopRSS: make(chan struct{})}
	rport, err := benchrun.FreePort()
	if err != nil {
		return nil, err
	}
	if _, err := c.startCmd("redis", "redis-server", "--port", strconv.Itoa(rport), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir); err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", rport)
	c.pool = &redis.Pool{MaxIdle: 2, Dial: func() (redis.Conn, error) { return redis.Dial("tcp", addr) }}
	if err := benchrun.WaitFor(10*time.Second, 20*time.Millisecond, func() error { _, err := c.do("PING"); return err }); err != nil {
		c.close()
		return nil, fmt.Errorf("redis-server: %w", err)
	}
	c.env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"REDIS_URL=redis://" + addr + "/0",
		"DATA_DIR=" + dir,
		"DATABASE_URL=sqlite://" + filepath.Join(dir, "pallarel.sqlite3"),
		"LOCAL_SAVE=true",
		"STORAGE_DIR=" + filepath.Join(dir, "storage"),
		"LAUNCHER=none",
		"GIN_MODE=release",
		"PALLAREL_CPUPROFILE=" + os.Getenv("PALLAREL_CPUPROFILE"),
	}, extraEnv...)
	// Go runtime settings pass through, to compare them, and ROW_CELLS
	// (row references against cells: LAUNCHER=none pushes cells).
	for _, k := range []string{"GOGC", "GOMEMLIMIT", "GOMAXPROCS", "ROW_CELLS"} {
		if v, ok := os.LookupEnv(k); ok {
			c.env = append(c.env, k+"="+v)
		}
	}
	hport, err := benchrun.FreePort()
	if err != nil {
		c.close()
		return nil, err
	}
	c.base = fmt.Sprintf("http://127.0.0.1:%d", hport)
	if _, err := c.start("server", "server", "-addr", fmt.Sprintf("127.0.0.1:%d", hport)); err != nil {
		c.close()
		return nil, err
	}
	if err := benchrun.WaitFor(30*time.Second, 20*time.Millisecond, func() error {
		resp, err := http.Get(c.base + "/up")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return errors.New(resp.Status)
		}
		return nil
	}); err != nil {
		c.close()
		return nil, fmt.Errorf("server /up: %w", err)
	}
	return c, nil
}

func (c *cluster) do(cmd string, args ...any) (any, error) {
	conn := c.pool.Get()
	defer conn.Close()
	return conn.Do(cmd, args...)
}

// start runs one of the Pallarel binaries.
func (c *cluster) start(name, bin string, args ...string) (*proc, error) {
	return c.startCmd(name, filepath.Join(c.bin, bin), args...)
}

func (c *cluster) startCmd(name, path string, args ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(c.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	if c.env != nil {
		cmd.Env = c.env
	}
	cmd.Dir = c.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	go p.sample(c.stopRSS)
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// worker starts a worker process on queue at concurrency conc.
func (c *cluster) worker(name string, conc int, queues ...string) (*proc, error) {
	args := []string{"-c", strconv.Itoa(conc), "-t", "5"}
	for _, q := range queues {
		args = append(args, "-q", q)
	}
	return c.start(name, "worker", args...)
}

// cpuByProc is the CPU seconds each running process has used so far.
func (c *cluster) cpuByProc() map[string]float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]float64, len(c.procs))
	for _, p := range c.procs {
		if v, err := cpuSeconds(p.cmd.Process.Pid); err == nil {
			m[p.name] = v
		}
	}
	return m
}

// printRSS prints the peak RSS of every process as RESULT lines.
func (c *cluster) printRSS(scenario, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		rss, hwm := p.peaks()
		cpu, _ := cpuSeconds(p.cmd.Process.Pid)
		fmt.Printf("RESULT rss scenario=%s name=%s proc=%s peak_rss_mb=%.1f vmhwm_mb=%.1f cpu_s=%.2f\n", scenario, name, p.name, rss, hwm, cpu)
	}
}

// close stops every process (Pallarel's first, Redis last) and removes the
// cluster's directory unless KEEP is set.
func (c *cluster) close() {
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		p.log.Close()
	}
	close(c.stopRSS)
	if c.pool != nil {
		c.pool.Close()
	}
	if os.Getenv("KEEP") == "" {
		os.RemoveAll(c.dir)
	} else {
		fmt.Fprintln(os.Stderr, "kept", c.dir)
	}
}

// upload streams file to the cluster's server (benchrun.Upload).
func (c *cluster) upload(ctx context.Context, file, typ string) (benchrun.Uploaded, error) {
	return benchrun.Upload(ctx, c.base, file, typ)
}

// status reads token's run.
func (c *cluster) status(token string) (benchrun.Status, error) {
	return benchrun.RunStatus(c.base, token)
}

// download reads the ZIP and returns its bytes.
func (c *cluster) download(token string) ([]byte, error) {
	resp, err := http.Get(c.base + "/csv_processing/" + token + "/download")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := io.Copy(&b, resp.Body); err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("download: %s: %.200s", resp.Status, b.String())
	}
	return b.Bytes(), nil
}

// redisStats returns total_commands_processed and the calls of each
// command (INFO commandstats).
func (c *cluster) redisStats() (int64, map[string]int64, error) {
	info, err := redis.String(c.do("INFO", "stats"))
	if err != nil {
		return 0, nil, err
	}
	var total int64
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			total, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	cs, err := redis.String(c.do("INFO", "commandstats"))
	if err != nil {
		return 0, nil, err
	}
	calls := map[string]int64{}
	for _, line := range strings.Split(cs, "\r\n") {
		rest, ok := strings.CutPrefix(line, "cmdstat_")
		if !ok {
			continue
		}
		name, vals, _ := strings.Cut(rest, ":")
		for _, kv := range strings.Split(vals, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				calls[name], _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return total, calls, nil
}

// logTail returns the end of a process's log, for error messages.
func (c *cluster) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, name+".log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
