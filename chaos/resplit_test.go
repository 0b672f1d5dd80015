package chaos

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// A re-split racing a live split: the upload's SplitCsvJob is delivered
// twice (the same payload pushed again, as a client retrying its push does),
// and two report workers take both copies at once. One run, every row
// once, one finalizer.
func TestSplitDeliveredTwice(t *testing.T) {
	c := newCluster(t, "SPLIT_WINDOW=500")
	n := sized(5000, 50000)
	// No report worker yet: the split job waits in its queue.
	u := c.upload(makeCSV("RS", n), "text")
	var split string
	for deadline := time.Now().Add(30 * time.Second); split == ""; time.Sleep(10 * time.Millisecond) {
		jobs, _ := redis.Strings(c.redisDo("LRANGE", "queue:report", 0, -1))
		for _, j := range jobs {
			if strings.Contains(j, "SplitCsvJob") && strings.Contains(j, u.Token) {
				split = j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SplitCsvJob for %s in queue:report: %v", u.Token, jobs)
		}
	}
	if _, err := c.redisDo("LPUSH", "queue:report", split); err != nil {
		t.Fatal(err)
	}
	c.worker("report", 1, "report", "default")
	c.worker("report2", 1, "report", "default")
	// Both copies are taken before either split ends.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		if l, _ := redis.Int(c.redisDo("LLEN", "queue:report")); l == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the split jobs were not taken")
		}
	}
	pushed, _ := redis.Int(c.redisDo("GET", "pallarel:split:"+u.Token))
	t.Logf("both split jobs taken with %d rows recorded pushed", pushed)
	c.worker("token", 3, u.Queue)
	s := c.waitFinished(u.Token, 3*time.Minute)
	if s.State != "completed" || s.TotalCount != n {
		t.Fatalf("run: %+v", s)
	}
	r := c.verify(u.Token, "RS", n)
	expectIntact(t, r, 0)
	if r.done+r.failed != n {
		t.Fatalf("the ZIP holds %d rows for an upload of %d", r.done+r.failed, n)
	}
	var logs strings.Builder
	for _, p := range c.procs {
		logs.WriteString(p.log.String())
	}
	if k := countLines(logs.String(), "report finished", u.Token); k != 1 {
		t.Errorf("finalizer finished %d times, want 1", k)
	}
	// The ledger drops a second copy of a row, so count the row jobs run:
	// a split that pushed its rows twice would show here.
	// The token worker's summary comes as it stops.
	if err := c.wait(c.signal("token", syscall.SIGTERM), 30*time.Second); err != nil {
		t.Fatalf("token worker: %v", err)
	}
	if k := rowJobsRun(c.procs["token"].log.String()); k != n {
		t.Errorf("%d row jobs ran for %d rows", k, n)
	}
	t.Logf("split started %d times, done %d times", countLines(logs.String(), "split started", u.Token), countLines(logs.String(), "split done", u.Token))
}

// rowJobsRun is the last total_done of a worker's row-job summary lines.
func rowJobsRun(log string) int {
	k := 0
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `msg="jobs summary"`) || !strings.Contains(line, "class=Report::ProcessCsvRowJob") {
			continue
		}
		if i := strings.Index(line, "total_done="); i >= 0 {
			fmt.Sscan(line[i+len("total_done="):], &k)
		}
	}
	return k
}
