package chaos

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/router"
)

// The Rails app beside Go on one Redis and one MariaDB: the app's own job
// classes (internal/e2etest/railsapp/app.rb, on real Sidekiq 8.0.6 with
// ActiveRecord 7.2 and mysql2) and the Go binaries share runs in the mixes
// a migration goes through.

// peersRoot is the sidekiq-peers chroot: Ruby's /tmp/reports is under it.
const peersRoot = "/opt/sidekiq7"

// appReportsDir is the Ruby workers' /tmp/reports as Go sees it.
const appReportsDir = peersRoot + "/tmp/reports"

// mixRows is the size of each mixed run.
const mixRows = 2000

// railsDB is a fresh MariaDB database the Go cluster and the Ruby app share.
type railsDB struct {
	name, url string
	store     *models.Store
}

func freshMariaDB(t *testing.T) *railsDB {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name := "pallarel_rails_" + hex.EncodeToString(b)
	admin, err := models.Open(context.Background(), models.DBConfig{URL: "mysql://root@127.0.0.1:3306/test", MaxOpenConns: 1})
	if err != nil {
		t.Fatalf("MariaDB at 127.0.0.1:3306 is required: %v", err)
	}
	if err := admin.Exec("CREATE DATABASE `" + name + "` CHARACTER SET utf8mb4").Error; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := admin.Exec("DROP DATABASE `" + name + "`").Error; err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
		models.Close(admin)
	})
	return &railsDB{name: name, url: "mysql://root@127.0.0.1:3306/" + name}
}

// newRailsCluster is a Go server (whose run supervisor passes every
// second) and a Go `report` worker on a fresh MariaDB database; workers of
// either side are started by the test.
func newRailsCluster(t *testing.T, env ...string) (*cluster, *railsDB) {
	t.Helper()
	db := freshMariaDB(t)
	// Go sees the Ruby workers' /tmp/reports (the chroot's) as the app's
	// reports dir, as on one host or a shared volume.
	c := newCluster(t, append([]string{"DATABASE_URL=" + db.url, "SUPERVISE_INTERVAL=1s", "APP_REPORTS_DIR=" + appReportsDir}, env...)...)
	gdb, err := models.Open(context.Background(), models.DBConfig{URL: db.url, MaxOpenConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close(gdb) })
	db.store = models.NewStore(gdb)
	return c, db
}

// rubyEnv is the Rails app's environment: REDIS_URL a bare host, as the
// app's config/redis.yml reads it, DB_* as its database.yml, local saving.
func (c *cluster) rubyEnv(db *railsDB) []string {
	return append(os.Environ(), "REDIS_URL="+c.redis.Addr, "DB_HOST=127.0.0.1", "DB_NAME="+db.name,
		"DB_USER=root", "LOCAL_SAVE=true", "APP_FINALIZE_INTERVAL=1", "RACK_ENV=test")
}

// rubyApp is a running Ruby Sidekiq 8.0.6 with the app's classes.
type rubyApp struct {
	cmd  *exec.Cmd
	log  *e2etest.Buffer
	done chan struct{}
}

// startRubyApp starts `sidekiq -r ./railsapp/app.rb -q queue -c 10`.
func (c *cluster) startRubyApp(db *railsDB, queue string) *rubyApp {
	t := c.t
	t.Helper()
	dir := e2etest.RubyDir(t)
	cmd := exec.Command(e2etest.SidekiqPeers(t), "sidekiq", "8", "-r", "./"+e2etest.RailsAppDir+"/app.rb",
		"-q", queue, "-c", "10", "-t", "5")
	cmd.Dir = dir
	cmd.Env = c.rubyEnv(db)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	r := &rubyApp{cmd: cmd, log: &e2etest.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ruby sidekiq: %v", err)
	}
	go func() { _ = cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			t.Logf("--- ruby sidekiq log (tail) ---\n%s", tail(r.log.String(), 4000))
		}
	})
	return r
}

// stop sends TERM (Sidekiq finishes or hands back what it runs) and waits.
func (r *rubyApp) stop(t *testing.T) {
	select {
	case <-r.done:
		return
	default:
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
		t.Errorf("ruby sidekiq ignored TERM for 30s")
	}
}

// rubyStep runs one step of the app (railsapp/cmd.rb) and decodes its result.
func (c *cluster) rubyStep(db *railsDB, out any, args ...string) {
	t := c.t
	t.Helper()
	dir := e2etest.RubyDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2etest.SidekiqPeers(t), append([]string{"ruby", "8", "./" + e2etest.RailsAppDir + "/cmd.rb"}, args...)...)
	cmd.Dir = dir
	cmd.Env = c.rubyEnv(db)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cmd.rb %v: %v\n%s\n%s", args, err, stderr.String(), stdout.String())
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "RAILS_RESULT "); ok {
			if err := json.Unmarshal([]byte(rest), out); err != nil {
				t.Fatalf("cmd.rb %v: %v: %s", args, err, rest)
			}
			return
		}
	}
	t.Fatalf("cmd.rb %v printed no result:\n%s\n%s", args, stdout.String(), stderr.String())
}

// rubyFile writes data into the directory Ruby sees and returns its path.
func rubyFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(e2etest.RubyDir(t), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(p) })
	return p
}

// waitReport waits for the report to be completed, by the database.
func waitReport(t *testing.T, db *railsDB, id int64, d time.Duration) models.ClientReport {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		r, err := db.store.ReportByID(context.Background(), id)
		if err == nil && (r.Status == models.ReportCompleted || r.Status == models.ReportFailed) {
			if r.Status != models.ReportCompleted {
				t.Fatalf("report %d failed: %q", id, r.ErrorMessage)
			}
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("report %d not completed in %s: %+v (%v)", id, d, r, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitStatusGone waits for the app's finalizer to delete the status row,
// its last step.
func waitStatusGone(t *testing.T, db *railsDB, token string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := db.store.StatusByToken(context.Background(), token); errors.Is(err, models.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the app's finalizer deletes the status row; it is still there after 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkRubyZip reads the ZIP the app's finalizer wrote for token and
// checks that it holds every one of n rows exactly once (checkZipRows).
func checkRubyZip(t *testing.T, token, typ, prefix string, n int) {
	t.Helper()
	path := filepath.Join(peersRoot, "tmp", "reports", token+"_"+typ+".zip")
	t.Cleanup(func() { os.Remove(path) })
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatalf("the app's ZIP: %v", err)
	}
	defer zr.Close()
	checkZipRows(t, "the app's ZIP", zr.File, prefix, n)
}

// goCopy is the name of a Go row file: row-NNNNNN-<id>.<ext>.
var goCopy = regexp.MustCompile(`^row-[0-9]{6}-(.+)\.[a-z]+$`)

// checkZipRows checks that the row files of a ZIP (either finalizer's; the
// manifest aside) hold every one of n rows exactly once, and nothing else:
// the app's row job writes the row hash it got as JSON; Go's files are
// named by their row's id and hold it.
func checkZipRows(t *testing.T, what string, files []*zip.File, prefix string, n int) {
	t.Helper()
	seen := map[string]int{}
	rowFiles := 0
	for _, f := range files {
		if f.Name == "manifest.csv" {
			continue
		}
		rowFiles++
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(rc)
		rc.Close()
		if m := goCopy.FindStringSubmatch(path.Base(f.Name)); m != nil {
			if !strings.Contains(string(unpackXLSX(body)), m[1]) {
				t.Fatalf("%s: %s lacks its row's id", what, f.Name)
			}
			seen[m[1]]++
			continue
		}
		var row map[string]any
		if err := json.Unmarshal(body, &row); err != nil {
			t.Fatalf("%s: %s: %v: %q", what, f.Name, err, body)
		}
		seen[fmt.Sprint(row["個別識別番号"])]++
	}
	lost, dup := 0, 0
	for i := 1; i <= n; i++ {
		switch k := seen[fmt.Sprintf("%s-%06d", prefix, i)]; {
		case k == 0:
			lost++
		case k > 1:
			dup += k - 1
		}
	}
	if lost != 0 || dup != 0 || rowFiles != n {
		t.Fatalf("%s holds %d files for %d rows: %d rows lost, %d duplicated", what, rowFiles, n, lost, dup)
	}
}

// goZip downloads the ZIP Go's finalizer made for token.
func (c *cluster) goZip(token string) []*zip.File {
	c.t.Helper()
	resp, err := http.Get(c.base + "/csv_processing/" + token + "/download")
	if err != nil {
		c.t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		c.t.Fatalf("Go's ZIP: %s: %v", resp.Status, err)
	}
	return zr.File
}

// checkEitherZip checks the ZIP of whichever finalizer ended the run (the
// report's file: Go's result key, or the app's local ZIP) for every row
// once, and client_reports.count.
func (c *cluster) checkEitherZip(rep models.ClientReport, token, prefix string, n int) (byGo bool) {
	c.t.Helper()
	if rep.Count != n {
		c.t.Errorf("client_reports.count = %d, want %d", rep.Count, n)
	}
	if rep.File == contract.ResultKey(token) {
		checkZipRows(c.t, "Go's ZIP", c.goZip(token), prefix, n)
		return true
	}
	checkRubyZip(c.t, token, "xlsx", prefix, n)
	return false
}

// tokenKeys lists the pallarel keys of token left in Redis, with their TTLs.
func (c *cluster) tokenKeys(token string) map[string]int {
	out := map[string]int{}
	keys, _ := redis.Strings(c.redisDo("KEYS", "pallarel:*"+token+"*"))
	for _, k := range keys {
		ttl, _ := redis.Int(c.redisDo("TTL", k))
		out[k] = ttl
	}
	if member, _ := redis.Bool(c.redisDo("SISMEMBER", "pallarel:runs", token)); member {
		out["pallarel:runs (member)"] = -1
	}
	return out
}

// waitNoKeys waits until no pallarel key of token is left.
func (c *cluster) waitNoKeys(token string, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := c.tokenKeys(token)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("pallarel keys of %s left after the run: %v", token, left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runJSON fetches the run's JSON as the page's API gives it.
func (c *cluster) runJSON(token string) map[string]any {
	req, _ := http.NewRequest(http.MethodGet, c.base+"/csv_processing/"+token, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return m
}

// Go splits (the upload and SplitCsvJob on Go's report worker), the app's
// Ruby classes work every row and finalize: Go's supervisor sees the Ruby
// worker on the queue and the app's done_count, keeps its hands off the
// rows (none pushed again: the app's ZIP holds each row once), says on the
// run's JSON that Ruby keeps the books, and drops its Redis state once the
// app's finalizer deleted the status row.
func TestRailsGoSplitsRubyWorks(t *testing.T) {
	c, db := newRailsCluster(t)
	c.worker("report", 2, "report", "default")
	u := c.upload(makeCSV("GR", mixRows), "xlsx")
	c.startRubyApp(db, u.Queue)

	sawRuby := false
	deadline := time.Now().Add(3 * time.Minute)
	for {
		r, err := db.store.ReportByID(context.Background(), u.ReportID)
		if err == nil && r.Status == models.ReportCompleted {
			break
		}
		if err == nil && r.Status == models.ReportFailed {
			t.Fatalf("report failed: %q", r.ErrorMessage)
		}
		if m := c.runJSON(u.Token); m["books"] == "ruby" {
			sawRuby = true
		}
		if time.Now().After(deadline) {
			t.Fatalf("report not completed in 3m: %+v", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !sawRuby {
		t.Errorf("the run's JSON never said Ruby keeps the books")
	}
	rep := waitReport(t, db, u.ReportID, time.Second)
	if rep.Count != mixRows {
		t.Errorf("client_reports.count = %d, want %d", rep.Count, mixRows)
	}
	checkRubyZip(t, u.Token, "xlsx", "GR", mixRows)
	waitStatusGone(t, db, u.Token)
	c.waitNoKeys(u.Token, 30*time.Second)
}

// The app's Ruby SplitCsvJob splits (a Ruby report worker), Go's token
// worker works the rows and Go finalizes: the ZIP names and orders the rows
// by their CSV row numbers (from the order the split pushed them), with a
// manifest that says so, and client_reports.count is right.
func TestRailsRubySplitsGoWorks(t *testing.T) {
	c, db := newRailsCluster(t)
	var split struct {
		Token    string `json:"token"`
		ReportID int64  `json:"report_id"`
	}
	c.rubyStep(db, &split, "split", rubyFile(t, "rg.csv", makeCSV("RG", mixRows)), "xlsx", "new")
	c.worker("token", 10, router.QueueName(split.Token))
	rep := waitReport(t, db, split.ReportID, 3*time.Minute)
	if rep.Count != mixRows {
		t.Errorf("client_reports.count = %d, want %d", rep.Count, mixRows)
	}
	expectIntact(t, c.verify(split.Token, "RG", mixRows), 0)
	checkZipOrder(t, c, split.Token)
	c.checkKeysExpire(split.Token)
	c.checkAppDirGone(split.Token)
}

// checkKeysExpire checks that a run Go ended leaves no pallarel key of
// its token without an expiry: what is left (the ledger, for "Retry failed
// rows") goes with its TTL.
func (c *cluster) checkKeysExpire(token string) {
	c.t.Helper()
	for k, ttl := range c.tokenKeys(token) {
		if ttl < 0 {
			c.t.Errorf("%s left without an expiry (TTL %d)", k, ttl)
		}
	}
}

// checkZipOrder checks the ZIP's row files come in manifest (CSV) order
// and that none is named by jid.
func checkZipOrder(t *testing.T, c *cluster, token string) {
	t.Helper()
	resp, err := http.Get(c.base + "/csv_processing/" + token + "/download")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	prev := ""
	for _, f := range zr.File {
		if f.Name == "manifest.csv" {
			continue
		}
		if strings.Contains(f.Name, "-row-000000") || f.Name < prev {
			t.Fatalf("ZIP entry %q after %q: not in CSV order", f.Name, prev)
		}
		prev = f.Name
	}
}

// A rolling deploy: Go's and the app's Ruby workers serve one token queue
// at once (Go split the run). Every row runs once, on one side or the
// other: Go's supervisor, seeing the Ruby worker, pushes none again (it
// used to push the rows Ruby finished 7-8 times), the app's done_count,
// which both sides add to, ends at the row count and never passes it, and
// the run ends with its Redis state gone. Either side's finalizer may end
// it; with APP_REPORTS_DIR shared, its ZIP holds every row once.
func TestRailsRollingDeploy(t *testing.T) {
	c, db := newRailsCluster(t)
	c.worker("report", 2, "report", "default")
	u := c.upload(makeCSV("RD", mixRows), "xlsx")
	c.startRubyApp(db, u.Queue)
	c.waitRubyServes(u.Queue)
	c.worker("token", 5, u.Queue)
	ctx := context.Background()

	maxDone := 0
	deadline := time.Now().Add(4 * time.Minute)
	for {
		if st, err := db.store.StatusByToken(ctx, u.Token); err == nil {
			maxDone = max(maxDone, st.DoneCount)
		}
		r, err := db.store.ReportByID(ctx, u.ReportID)
		if err == nil && r.Status == models.ReportCompleted {
			break
		}
		if err == nil && r.Status == models.ReportFailed {
			t.Fatalf("report failed: %q", r.ErrorMessage)
		}
		if time.Now().After(deadline) {
			t.Fatalf("report not completed in 4m: %+v (done_count so far %d)", r, maxDone)
		}
		time.Sleep(50 * time.Millisecond)
	}
	goRows, _ := redis.Int(c.redisDo("GET", "pallarel:count:"+u.Token))
	if maxDone > mixRows {
		t.Errorf("done_count reached %d for %d rows: rows ran twice", maxDone, mixRows)
	}
	if strings.Contains(c.procs["server"].log.String(), "pushing them again") {
		t.Errorf("Go's supervisor pushed rows again in a run Ruby works too")
	}
	t.Logf("Go ran %d of %d rows, Ruby the rest", goRows, mixRows)
	if goRows == 0 || goRows >= mixRows {
		t.Fatalf("the deploy's two sides did not both work this run")
	}
	rep := waitReport(t, db, u.ReportID, time.Second)
	if byGo := c.checkEitherZip(rep, u.Token, "RD", mixRows); byGo {
		// Go's finalizer keeps the ledger a while, for "Retry failed rows".
		t.Logf("Go's finalizer ended the run")
		c.checkKeysExpire(u.Token)
	} else {
		waitStatusGone(t, db, u.Token)
		c.waitNoKeys(u.Token, 30*time.Second)
	}
	c.checkAppDirGone(u.Token)
}

// checkAppDirGone checks the run's folder in the app's reports dir went
// with the run, whichever finalizer ended it.
func (c *cluster) checkAppDirGone(token string) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := os.Stat(filepath.Join(appReportsDir, token))
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the run's folder in the app's reports dir is still there: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitRubyServes waits for a live Ruby Sidekiq (no "pallarel" label) to
// serve queue.
func (c *cluster) waitRubyServes(queue string) {
	c.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ids, _ := redis.Strings(c.redisDo("SMEMBERS", "processes"))
		for _, id := range ids {
			raw, _ := redis.Bytes(c.redisDo("HGET", id, "info"))
			var info struct {
				Queues []string `json:"queues"`
				Labels []string `json:"labels"`
			}
			if json.Unmarshal(raw, &info) == nil && slices.Contains(info.Queues, queue) && !slices.Contains(info.Labels, "pallarel") {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no Ruby Sidekiq serves %s after 90s", queue)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A switch mid-run, Ruby to Go: the app's Ruby SplitCsvJob splits, its Ruby
// worker runs the first rows and is stopped, and Go's token worker takes
// the rest. Go numbers the rows it finds after those Ruby ended, and its
// finalizer ends the run once done_count says every row ended: each row in
// the manifest once and done, Go's rows with their files under their CSV
// numbers, Ruby's marked as run by Ruby, their files (from the shared
// APP_REPORTS_DIR) in the ZIP under ruby/: every row's file once;
// client_reports.count is the files in the ZIP.
func TestRailsSwitchRubyToGo(t *testing.T) {
	c, db := newRailsCluster(t)
	var split struct {
		Token    string `json:"token"`
		ReportID int64  `json:"report_id"`
	}
	c.rubyStep(db, &split, "split", rubyFile(t, "sw.csv", makeCSV("SW", mixRows)), "xlsx", "new")
	queue := router.QueueName(split.Token)
	ruby := c.startRubyApp(db, queue)
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := db.store.StatusByToken(ctx, split.Token)
		if err == nil && st.DoneCount >= 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ruby did not run 200 rows in 2m: %+v (%v)", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ruby.stop(t)
	st, err := db.store.StatusByToken(ctx, split.Token)
	if err != nil || st.DoneCount >= mixRows {
		t.Fatalf("the switch landed after the run: %+v (%v)", st, err)
	}
	rubyRan := st.DoneCount
	c.worker("token", 10, queue)
	rep := waitReport(t, db, split.ReportID, 3*time.Minute)
	r := c.verify(split.Token, "SW", mixRows)
	if r.lost != 0 || r.duplicates != 0 {
		t.Fatalf("rows lost %d, duplicated %d (must be 0)", r.lost, r.duplicates)
	}
	if r.failed != 0 || r.done != mixRows || rep.Count != mixRows {
		t.Errorf("Ruby ran %d rows: manifest done %d failed %d, client_reports.count %d", rubyRan, r.done, r.failed, rep.Count)
	}
	checkZipRows(t, "Go's ZIP", c.goZip(split.Token), "SW", mixRows)
	c.checkAppDirGone(split.Token)
	c.checkKeysExpire(split.Token)
}

// A switch mid-run, Go to Ruby (a rollback): Go splits, Go's token worker
// runs the first rows and is stopped, and the app's Ruby worker runs the
// rest and finalizes. No row runs twice: Go pushes none again, the app's
// ZIP holds every row once (Go's from their copies in the shared
// APP_REPORTS_DIR), done_count is exact, and Go's Redis state and row
// files go once the app deleted the status row.
func TestRailsSwitchGoToRuby(t *testing.T) {
	c, db := newRailsCluster(t)
	c.worker("report", 2, "report", "default")
	u := c.upload(makeCSV("SG", mixRows), "xlsx")
	goWorker := c.worker("token", 2, u.Queue)
	c.waitProgress(u.Token, 200, mixRows, 2*time.Minute)
	c.signal("token", syscall.SIGTERM)
	if err := c.wait(goWorker, 30*time.Second); err != nil {
		t.Fatalf("Go worker: %v", err)
	}
	goRan, _ := redis.Int(c.redisDo("GET", "pallarel:count:"+u.Token))
	if goRan >= mixRows {
		t.Fatalf("the switch landed after the run (Go ran %d rows)", goRan)
	}
	c.startRubyApp(db, u.Queue)
	rep := waitReport(t, db, u.ReportID, 3*time.Minute)
	if rep.Count != mixRows {
		t.Errorf("client_reports.count %d, want %d (Go ran %d)", rep.Count, mixRows, goRan)
	}
	checkRubyZip(t, u.Token, "xlsx", "SG", mixRows)
	if strings.Contains(c.procs["server"].log.String(), "pushing them again") {
		t.Errorf("Go's supervisor pushed rows again in a run Ruby took over")
	}
	waitStatusGone(t, db, u.Token)
	c.waitNoKeys(u.Token, 30*time.Second)
	if left, _ := filepath.Glob(filepath.Join(c.dir, "storage", "rows", u.Token, "*")); len(left) > 0 {
		t.Errorf("Go's row files left: %v", left)
	}
}
