// Command memorybench samples the RSS of Pallarel's processes through one
// big text run (issue 19 item 7): the all-in-one server (embedded Redis,
// in-process workers), or the split layout (server, a `report` worker and a
// token worker, which runs the finalizer, on a private redis-server). VmRSS
// and VmHWM are read from /proc/<pid>/status every -every through the
// split, the rows, the finalize and -after past the end. bench/memory.sh
// runs it; figures go to bench/RESULTS.md.
//
//	memorybench gencsv -rows N -out FILE
//	memorybench run -layout allinone|split -bin DIR -csv FILE -rows N [-after 60s] [-samples FILE]
package main

import (
	"github.com/pallarel/pallarel/bench/internal/benchrun"

	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: memorybench run ... (the CSV: pipelinebench gencsv)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = run(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "memorybench:", err)
		os.Exit(1)
	}
}

// phases of a run as the status JSON shows it, then after its end.
var phases = []string{"upload", "split", "rows", "finalize", "after"}

// proc is one sampled process.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	// per phase: the highest VmRSS sampled (KiB); VmHWM as last read
	peak    map[string]int64
	hwm     int64
	endRSS  int64 // at the run's end
	lastRSS int64 // last sample (-after past the end)
	exited  bool
}

func (p *proc) sample(phase string) (rss int64, ok bool) {
	select {
	case <-p.done:
		p.exited = true
		return 0, false
	default:
	}
	rss, err := benchrun.StatusKiB(p.cmd.Process.Pid, "VmRSS:")
	if err != nil {
		return 0, false
	}
	if h, err := benchrun.StatusKiB(p.cmd.Process.Pid, "VmHWM:"); err == nil {
		p.hwm = h
	}
	p.peak[phase] = max(p.peak[phase], rss)
	p.lastRSS = rss
	return rss, true
}

type layout struct {
	dir   string
	env   []string
	bin   string
	base  string
	procs []*proc
}

func (l *layout) start(name, path string, args ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(l.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env, cmd.Dir = l.env, l.dir
	cmd.Stderr = logf
	cmd.Stdout = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return l.startCmd(name, cmd, logf)
}

func (l *layout) startCmd(name string, cmd *exec.Cmd, logf *os.File) (*proc, error) {
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logf, done: make(chan struct{}), peak: map[string]int64{}}
	go func() { _ = cmd.Wait(); close(p.done) }()
	l.procs = append(l.procs, p)
	return p, nil
}

// close stops the processes, the last started first.
func (l *layout) close() {
	for i := len(l.procs) - 1; i >= 0; i-- {
		p := l.procs[i]
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		p.log.Close()
	}
	if os.Getenv("KEEP") == "" {
		os.RemoveAll(l.dir)
	} else {
		fmt.Fprintln(os.Stderr, "kept", l.dir)
	}
}

var urlRE = regexp.MustCompile(`Upload a CSV:\s+(http://\S+?)/\s*$`)

// startAllInOne runs the server as `make run` does: no REDIS_URL, so an
// embedded Redis, SQLite and local storage in DATA_DIR and every worker in
// the server process.
func (l *layout) startAllInOne() error {
	logf, err := os.Create(filepath.Join(l.dir, "server.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(l.bin, "server"), "-addr", "127.0.0.1:0", "-embedded-redis", "127.0.0.1:0")
	cmd.Env, cmd.Dir, cmd.Stderr = l.env, l.dir, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if _, err := l.startCmd("server", cmd, logf); err != nil {
		return err
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := urlRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case l.base = <-found:
		return nil
	case <-time.After(2 * time.Minute):
		return errors.New("the all-in-one server printed no URL within 2 min")
	}
}

// startSplit runs the production layout: a private redis-server, the
// server with LAUNCHER=none and a `report` worker; the token worker is
// started once the upload names its queue.
func (l *layout) startSplit() error {
	rport, err := benchrun.FreePort()
	if err != nil {
		return err
	}
	if _, err := l.start("redis", "redis-server", "--port", strconv.Itoa(rport), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", l.dir); err != nil {
		return err
	}
	l.env = append(l.env,
		fmt.Sprintf("REDIS_URL=redis://127.0.0.1:%d/0", rport),
		"DATABASE_URL=sqlite://"+filepath.Join(l.dir, "pallarel.sqlite3"),
		"LOCAL_SAVE=true",
		"STORAGE_DIR="+filepath.Join(l.dir, "storage"),
		"LAUNCHER=none")
	hport, err := benchrun.FreePort()
	if err != nil {
		return err
	}
	l.base = fmt.Sprintf("http://127.0.0.1:%d", hport)
	if err := benchrun.WaitFor(10*time.Second, 50*time.Millisecond, func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", rport))
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	if _, err := l.start("server", filepath.Join(l.bin, "server"), "-addr", fmt.Sprintf("127.0.0.1:%d", hport)); err != nil {
		return err
	}
	if err := benchrun.WaitFor(30*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get(l.base + "/up")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return errors.New(resp.Status)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("server /up: %w", err)
	}
	_, err = l.start("report-worker", filepath.Join(l.bin, "worker"), "-c", "5", "-t", "5", "-q", "report", "-q", "default")
	return err
}

// phaseOf names the phase a status shows: the split until the total is
// known, the rows until each has ended, the finalize from its claim
// (finalized_at; done_count lags the last rows) until completed.
func phaseOf(s benchrun.Status, rows int) string {
	switch {
	case s.FinalizedAt != nil:
		return "finalize"
	case s.State == "splitting" || s.TotalCount < rows:
		return "split"
	case s.DoneCount+s.FailedCount < s.TotalCount:
		return "rows"
	default:
		return "finalize"
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	lay := fs.String("layout", "allinone", "allinone or split")
	bin := fs.String("bin", "", "directory with the server and worker binaries")
	file := fs.String("csv", "", "CSV to upload")
	rows := fs.Int("rows", 0, "data rows in the CSV")
	every := fs.Duration("every", 500*time.Millisecond, "sampling interval")
	after := fs.Duration("after", 60*time.Second, "keep sampling this long after the run ends")
	deadline := fs.Duration("deadline", 2*time.Hour, "give up after this long")
	samples := fs.String("samples", "", "write every sample (TSV) to this file")
	name := fs.String("name", "", "label of this run (default: the layout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bin == "" || *file == "" || *rows == 0 {
		return errors.New("run needs -bin, -csv and -rows")
	}
	label := *name
	if label == "" {
		label = *lay
	}
	dir, err := os.MkdirTemp("", "memorybench-")
	if err != nil {
		return err
	}
	l := &layout{dir: dir, bin: *bin, env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"DATA_DIR=" + filepath.Join(dir, "data"), "GIN_MODE=release"}}
	// Go runtime settings and the heap profile pass through, to compare them.
	for _, k := range []string{"GOGC", "GOMEMLIMIT", "GOMAXPROCS", "GODEBUG", "PALLAREL_HEAPPROFILE"} {
		if v, ok := os.LookupEnv(k); ok {
			l.env = append(l.env, k+"="+v)
		}
	}
	defer l.close()
	switch *lay {
	case "allinone":
		err = l.startAllInOne()
	case "split":
		err = l.startSplit()
	default:
		err = fmt.Errorf("unknown layout %q", *lay)
	}
	if err != nil {
		return err
	}
	var tsv *bufio.Writer
	if *samples != "" {
		f, err := os.Create(*samples)
		if err != nil {
			return err
		}
		defer f.Close()
		tsv = bufio.NewWriter(f)
		defer tsv.Flush()
		fmt.Fprintln(tsv, "run\tt_s\tphase\tproc\tvmrss_mb\tvmhwm_mb\tdone")
	}
	t0 := time.Now()
	phase := "upload"
	done := 0
	tick := func() {
		for _, p := range l.procs {
			if p.name == "redis" {
				continue
			}
			if rss, ok := p.sample(phase); ok && tsv != nil {
				fmt.Fprintf(tsv, "%s\t%.1f\t%s\t%s\t%.1f\t%.1f\t%d\n", label, time.Since(t0).Seconds(), phase, p.name,
					float64(rss)/1024, float64(p.hwm)/1024, done)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *deadline)
	defer cancel()
	upDone := make(chan error, 1)
	var up benchrun.Uploaded
	go func() { var err error; up, err = benchrun.Upload(ctx, l.base, *file, "text"); upDone <- err }()
	t := time.NewTicker(*every)
	defer t.Stop()
	for phase == "upload" {
		select {
		case err := <-upDone:
			if err != nil {
				return err
			}
			phase = "split"
		case <-t.C:
			tick()
		}
	}
	tUp := time.Since(t0)
	if *lay == "split" {
		if _, err := l.start("token-worker", filepath.Join(l.bin, "worker"), "-c", "10", "-t", "5", "-q", up.Queue); err != nil {
			return err
		}
	}
	var st benchrun.Status
	times := map[string]time.Duration{"upload": tUp}
	for {
		<-t.C
		if st, err = benchrun.RunStatus(l.base, up.Token); err != nil {
			return err
		}
		done = st.DoneCount
		if st.State == "completed" || st.State == "failed" || st.State == "cancelled" {
			break
		}
		if p := phaseOf(st, *rows); p != phase {
			times[phase] = time.Since(t0)
			phase = p
		}
		tick()
		if ctx.Err() != nil {
			return fmt.Errorf("%s: not finished within %v: %+v", label, *deadline, st)
		}
	}
	times[phase] = time.Since(t0)
	tick()
	tEnd := time.Since(t0)
	for _, p := range l.procs {
		p.endRSS = p.lastRSS
	}
	if st.State != "completed" || st.DoneCount != *rows || st.FailedCount != 0 {
		return fmt.Errorf("%s: run ended %+v, want %d rows done", label, st, *rows)
	}
	phase = "after"
	for time.Since(t0) < tEnd+*after {
		<-t.C
		tick()
	}
	// The rows often end with the split (the token worker keeps up): the
	// finalize then follows the split.
	fmt.Printf("RESULT memrun name=%s layout=%s rows=%d upload_s=%.1f split_end_s=%.1f rows_end_s=%.1f zip_ready_s=%.1f\n",
		label, *lay, *rows, tUp.Seconds(), times["split"].Seconds(), max(times["rows"], times["split"]).Seconds(), tEnd.Seconds())
	for _, p := range l.procs {
		if p.name == "redis" {
			continue
		}
		var b strings.Builder
		var all int64
		for _, ph := range phases {
			fmt.Fprintf(&b, " peak_%s_mb=%.1f", ph, float64(p.peak[ph])/1024)
			all = max(all, p.peak[ph])
		}
		afterRSS := fmt.Sprintf("%.1f", float64(p.lastRSS)/1024)
		if p.exited {
			afterRSS = "exited"
		}
		fmt.Printf("RESULT memproc name=%s layout=%s rows=%d proc=%s peak_mb=%.1f vmhwm_mb=%.1f end_mb=%.1f after_%.0fs_mb=%s%s\n",
			label, *lay, *rows, p.name, float64(all)/1024, float64(p.hwm)/1024, float64(p.endRSS)/1024, after.Seconds(), afterRSS, b.String())
	}
	return nil
}
