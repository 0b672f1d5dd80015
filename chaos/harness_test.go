// Package chaos is Pallarel's fault and bad-input suite: each case runs the
// real pipeline (a redis-server of its own, the real server and worker
// binaries as processes, SQLite, local storage), injects a fault, and then
// checks the ZIP row by row: rows in, rows out, lost (must be 0),
// duplicated (must be 0). `make test` runs the short form; `make chaos`
// runs the long form (-tags chaoslong) with bigger inputs and the load case.
package chaos

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/router"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "../cmd/server", "../cmd/worker")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  *e2etest.Buffer
	done chan struct{}
	err  error
}

// cluster is one pipeline: Redis, the web server and worker processes.
type cluster struct {
	t     *testing.T
	redis *redistest.Own
	dir   string
	env   []string
	base  string // http://127.0.0.1:port
	pool  *redis.Pool

	mu    sync.Mutex
	procs map[string]*proc
}

func newCluster(t *testing.T, extraEnv ...string) *cluster {
	t.Helper()
	own := redistest.NewOwn(t)
	// {redis_addr} in an extra variable is this cluster's host:port (a
	// bare-host REDIS_URL, as the Rails app's .env holds it).
	extraEnv = append([]string(nil), extraEnv...)
	for i, e := range extraEnv {
		extraEnv[i] = strings.ReplaceAll(e, "{redis_addr}", own.Addr)
	}
	c := newClusterAt(t, own.URL(0), redistest.NewPool(own.Addr, 0), extraEnv...)
	c.redis = own
	return c
}

// newClusterAt is a cluster on a Redis the test started itself (replicas,
// Sentinel, TLS): its processes get REDIS_URL=url and extraEnv, the test
// reads Redis through pool.
func newClusterAt(t *testing.T, url string, pool *redis.Pool, extraEnv ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), procs: map[string]*proc{}}
	c.env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + c.dir,
		"REDIS_URL=" + url,
		"DATA_DIR=" + c.dir,
		"DATABASE_URL=sqlite://" + filepath.Join(c.dir, "pallarel.sqlite3"),
		"LOCAL_SAVE=true",
		"STORAGE_DIR=" + filepath.Join(c.dir, "storage"),
		"LAUNCHER=none",
		"GIN_MODE=release",
	}, extraEnv...)
	c.pool = pool
	t.Cleanup(func() { c.pool.Close() })
	port := freePort(t)
	c.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	c.start("server", "server", "-addr", fmt.Sprintf("127.0.0.1:%d", port))
	c.waitHTTP("/up", 30*time.Second)
	t.Cleanup(c.stopAll)
	return c
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs a binary (server or worker) as a named process.
func (c *cluster) start(name, bin string, args ...string) *proc {
	c.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, bin), args...)
	cmd.Env = c.env
	cmd.Dir = c.dir
	p := &proc{name: name, cmd: cmd, log: &e2etest.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A worker the process launched may hold its output pipe after it
	// died: the process has ended when it exits, not when the pipe closes.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
	return p
}

// worker starts a worker process on queues with a short heartbeat TTL, so a
// killed worker's jobs come back within seconds.
func (c *cluster) worker(name string, conc int, queues ...string) *proc {
	args := []string{"-c", fmt.Sprint(conc), "--process-ttl", "3s", "-t", "5"}
	for _, q := range queues {
		args = append(args, "-q", q)
	}
	return c.start(name, "worker", args...)
}

func (c *cluster) signal(name string, sig syscall.Signal) *proc {
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	if p == nil {
		c.t.Fatalf("no process %s", name)
	}
	_ = p.cmd.Process.Signal(sig)
	return p
}

func (c *cluster) wait(p *proc, d time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		c.t.Fatalf("%s did not exit within %s; log:\n%s", p.name, d, tail(p.log.String(), 3000))
		return nil
	}
}

func (c *cluster) stopAll() {
	c.mu.Lock()
	procs := make([]*proc, 0, len(c.procs))
	for _, p := range c.procs {
		procs = append(procs, p)
	}
	c.mu.Unlock()
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				c.t.Errorf("%s did not die after SIGKILL", p.name)
			}
		}
		if c.t.Failed() {
			c.t.Logf("--- %s log (tail) ---\n%s", p.name, tail(p.log.String(), 4000))
		}
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func (c *cluster) waitHTTP(path string, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get(c.base + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s not answering 200 within %s: %v", path, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// makeCSV returns a CSV of n rows whose first column is a unique id,
// prefix-NNNNNN.
func makeCSV(prefix string, n int) []byte {
	var b bytes.Buffer
	b.WriteString("個別識別番号,保険者名,年度\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%s-%06d,保険者%d,%d\n", prefix, i, i%97, 2000+i%30)
	}
	return b.Bytes()
}

type uploaded struct {
	Token    string `json:"token"`
	ReportID int64  `json:"report_id"`
	Queue    string `json:"queue"`
}

func (c *cluster) upload(csvData []byte, typ string) uploaded {
	c.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("csv_type", typ)
	w, _ := mw.CreateFormFile("csv_file", "rows.csv")
	w.Write(csvData)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, c.base+"/csv_processing", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		c.t.Fatalf("upload: %s: %s", resp.Status, data)
	}
	var u uploaded
	if err := json.Unmarshal(data, &u); err != nil {
		c.t.Fatal(err)
	}
	if want := router.QueueName(u.Token); u.Queue != want {
		c.t.Fatalf("queue %s, want %s", u.Queue, want)
	}
	return u
}

// postJSON posts an empty JSON object to path, as the pages' buttons and
// API clients do, and returns the body of the 200 answer.
func (c *cluster) postJSON(path string) []byte {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("POST %s: %s: %s", path, resp.Status, body)
	}
	return body
}

type runStatus struct {
	State       string `json:"state"`
	TotalCount  int    `json:"total_count"`
	DoneCount   int    `json:"done_count"`
	FailedCount int    `json:"failed_count"`
	LastError   string `json:"last_error"`
}

func (c *cluster) status(token string) runStatus {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.base+"/csv_processing/"+token, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return runStatus{State: "unreachable: " + err.Error()}
	}
	defer resp.Body.Close()
	var s runStatus
	_ = json.NewDecoder(resp.Body).Decode(&s)
	return s
}

// waitProgress waits until at least n of token's total rows ended, by the
// row ledger in Redis (the status row's counts are written only twice a
// second, and text rows run faster than that), and fails the test when the
// run had already ended: a fault must land mid-run.
func (c *cluster) waitProgress(token string, n, total int, d time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ended, _ := redis.Int(c.redisDo("GET", "pallarel:count:"+token))
		if ended >= total {
			c.t.Fatalf("run %s ended (%d rows) before the fault: make it bigger", token, ended)
		}
		if ended >= n {
			return ended
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("run %s: %d rows not reached in %s (%d ended)", token, n, d, ended)
		}
		time.Sleep(time.Millisecond)
	}
}

func (c *cluster) waitFinished(token string, d time.Duration) runStatus {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		s := c.status(token)
		if s.State == "completed" || s.State == "failed" || s.State == "cancelled" {
			return s
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("run %s not finished in %s: %+v", token, d, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// result is what a ZIP holds, row by row.
type result struct {
	rowsIn, done, failed, lost, duplicates int
	failures                               map[int]string
}

// verify downloads the ZIP and checks every one of n rows appears exactly
// once: done with a file holding its id, or failed with a reason.
func (c *cluster) verify(token, prefix string, n int) result {
	c.t.Helper()
	resp, err := http.Get(c.base + "/csv_processing/" + token + "/download")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		c.t.Fatalf("download: %s: %s", resp.Status, data)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		c.t.Fatalf("zip: %v", err)
	}
	files := map[string]*zip.File{}
	for _, f := range zr.File {
		files[f.Name] = f
	}
	mf, ok := files["manifest.csv"]
	if !ok {
		c.t.Fatal("no manifest.csv")
	}
	rc, _ := mf.Open()
	raw, _ := io.ReadAll(rc)
	rc.Close()
	recs, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")))).ReadAll()
	if err != nil {
		c.t.Fatal(err)
	}
	r := result{rowsIn: n, failures: map[int]string{}}
	seen := map[int]int{}
	for _, rec := range recs[1:] {
		var row int
		fmt.Sscan(rec[0], &row)
		seen[row]++
		switch rec[2] {
		case "done":
			if rec[1] == "" && strings.Contains(rec[3], "ruby/") {
				// Run by a Ruby worker: its file is one of the ZIP's
				// ruby/ entries, which checkZipRows reads.
				r.done++
				continue
			}
			f := files[rec[1]]
			if f == nil {
				c.t.Errorf("row %d: file %q missing from the ZIP", row, rec[1])
				continue
			}
			fr, _ := f.Open()
			body, _ := io.ReadAll(fr)
			fr.Close()
			body = unpackXLSX(body)
			if want := fmt.Sprintf("%s-%06d", prefix, row); !strings.Contains(string(body), want) {
				c.t.Errorf("row %d: file %s lacks %s: %.300q", row, rec[1], want, body)
			}
			r.done++
		default:
			r.failed++
			r.failures[row] = rec[3]
		}
	}
	for i := 1; i <= n; i++ {
		switch seen[i] {
		case 0:
			r.lost++
		case 1:
		default:
			r.duplicates += seen[i] - 1
		}
	}
	c.t.Logf("rows in %d, done %d, failed %d, lost %d, duplicates %d", r.rowsIn, r.done, r.failed, r.lost, r.duplicates)
	return r
}

func (c *cluster) redisDo(cmd string, args ...any) (any, error) {
	conn := c.pool.Get()
	defer conn.Close()
	return conn.Do(cmd, args...)
}

var _ = context.Background

// unpackXLSX returns the XML parts of an XLSX row file joined, so its
// cells can be searched as text; other files come back as they are.
func unpackXLSX(body []byte) []byte {
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		return body
	}
	var out bytes.Buffer
	for _, f := range zr.File {
		if !strings.HasPrefix(f.Name, "xl/") {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return body
		}
		_, _ = io.Copy(&out, rc)
		rc.Close()
	}
	return out.Bytes()
}
