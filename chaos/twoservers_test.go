package chaos

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Two web servers and two report workers on one Redis and one PostgreSQL
// database, each running a run supervisor: uploads go to both servers; a
// token worker is SIGKILLed mid-run, so a supervisor must act. One lease
// holder acts at a time, the dead worker is launched again once, every run
// completes with every row once, and each run's finalizer finishes once.
func TestTwoServersTwoReportWorkers(t *testing.T) {
	db := freshPostgres(t)
	c := supervisedCluster(t, fmt.Sprintf("DATABASE_URL=postgres://postgres@127.0.0.1:5432/%s?sslmode=disable", db))
	c.worker("report2", 2, "report", "default")
	port := freePort(t)
	// The second server's client side: the same cluster, another address.
	second := cluster{t: t, redis: c.redis, dir: c.dir, env: c.env, pool: c.pool, procs: map[string]*proc{},
		base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	c.start("server2", "server", "-addr", fmt.Sprintf("127.0.0.1:%d", port))
	second.waitHTTP("/up", 30*time.Second)

	n := sized(3000, 20000)
	type run struct {
		u      uploaded
		prefix string
		via    *cluster
	}
	var runs []run
	for i, via := range []*cluster{c, &second, c, &second} {
		prefix := fmt.Sprintf("TS%d", i)
		runs = append(runs, run{via.upload(makeCSV(prefix, n), "text"), prefix, via})
	}

	// The lease's owner, sampled while the runs go: one at a time.
	owners := map[string]bool{}
	sample := func() {
		if o, err := redis.String(c.redisDo("GET", "pallarel:supervisor")); err == nil {
			owners[o] = true
		}
	}
	c.waitProgress(runs[0].u.Token, n/10, n, 90*time.Second)
	sample()
	pid := pidOf(t, c, runs[0].u.Queue)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed the token worker of run 0 (pid %d) with %d rows ended", pid, c.status(runs[0].u.Token).DoneCount)
	for _, r := range runs {
		for deadline := time.Now().Add(4 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
			sample()
			s := r.via.status(r.u.Token)
			if s.State == "completed" || s.State == "failed" || s.State == "cancelled" {
				if s.State != "completed" {
					t.Fatalf("run %s: %+v", r.prefix, s)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %s not finished: %+v", r.prefix, s)
			}
		}
		// Each server serves every run's ZIP.
		expectIntact(t, c.verify(r.u.Token, r.prefix, n), 0)
		expectIntact(t, second.verify(r.u.Token, r.prefix, n), 0)
	}
	t.Logf("supervisor lease owners seen: %d", len(owners))
	if len(owners) != 1 {
		t.Errorf("the supervisor lease changed hands %d times with no supervisor dying", len(owners)-1)
	}

	var all strings.Builder
	c.mu.Lock()
	for _, p := range c.procs {
		all.WriteString(p.log.String())
	}
	c.mu.Unlock()
	logs := all.String()
	for _, r := range runs {
		if k := countLines(logs, "report finished", r.u.Token); k != 1 {
			t.Errorf("run %s: finalizer finished %d times, want 1", r.prefix, k)
		}
	}
	if k := countLines(logs, "launching the worker again", runs[0].u.Token); k != 1 {
		t.Errorf("the killed worker was launched again %d times, want 1", k)
	}
	for _, name := range []string{"server", "server2", "report", "report2"} {
		select {
		case <-c.procs[name].done:
			t.Errorf("%s exited: %v", name, c.procs[name].err)
		default:
		}
	}
}

// countLines counts the lines of log holding both a and b.
func countLines(log, a, b string) int {
	k := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, a) && strings.Contains(line, b) {
			k++
		}
	}
	return k
}
