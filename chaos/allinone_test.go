package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

// The all-in-one server (`make run`: embedded Redis, SQLite, workers in
// process) SIGKILLed mid-run and started again on its data directory: the
// run resumes at once (the restarted server starts the run's in-process
// worker as it starts, with no launch grace: the default 45 s applies) and
// ends, every row in the ZIP once.
func TestAllInOneKilledAndRestarted(t *testing.T) {
	c := &cluster{t: t, dir: t.TempDir(), procs: map[string]*proc{}}
	t.Cleanup(c.stopAll)
	c.env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + c.dir,
		"DATA_DIR=" + c.dir,
		"GIN_MODE=release",
		"SUPERVISE_INTERVAL=1s",
	}
	port := freePort(t)
	redisPort := freePort(t)
	c.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	start := func(name string) {
		c.start(name, "server", "-addr", fmt.Sprintf("127.0.0.1:%d", port),
			"-embedded-redis", fmt.Sprintf("127.0.0.1:%d", redisPort))
		c.waitHTTP("/up", 60*time.Second)
	}
	start("allinone-1")
	n := faultRows()
	u := c.upload(makeCSV("A", n), "xlsx")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s := c.status(u.Token)
		if s.DoneCount >= n/10 {
			if s.State == "completed" {
				t.Fatal("the run ended before the fault: make it bigger")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress: %+v", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.signal("allinone-1", syscall.SIGKILL)
	_ = c.wait(c.procs["allinone-1"], 30*time.Second)
	fault := time.Now()
	start("allinone-2")
	up := time.Now()
	// Rows end again within seconds of the restart, far inside the 45 s
	// launch grace a supervisor would wait before relaunching: the row
	// ledger in the embedded Redis (the status row's counts lag) grows.
	c.pool = redistest.NewPool(fmt.Sprintf("127.0.0.1:%d", redisPort), 0)
	t.Cleanup(func() { c.pool.Close() })
	ended := func() int { n, _ := redis.Int(c.redisDo("GET", "pallarel:count:"+u.Token)); return n }
	before := ended()
	for ended() <= before {
		if time.Since(up) > 20*time.Second {
			t.Fatalf("no row ended within 20s of the restart (done %d): the run waited for a relaunch\n%s",
				before, tail(c.procs["allinone-2"].log.String(), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("rows ended again %s after the restarted server answered", time.Since(up).Round(10*time.Millisecond))
	// The dead server's in-flight jobs come back as soon as the new one
	// sees its pid gone (its Redis is private), not after its 60 s
	// heartbeat expires.
	if s := c.endsWithin(u.Token, fault, 4*time.Minute); s.State != "completed" {
		t.Fatalf("run: %+v", s)
	}
	if took := time.Since(fault); took > 50*time.Second {
		t.Errorf("the run ended %s after the kill: the dead process's jobs waited for its heartbeat", took.Round(time.Second))
	}
	if log := c.procs["allinone-2"].log.String(); !strings.Contains(log, "a process of this host is gone") {
		t.Errorf("the restarted server did not take the dead one's jobs back at once:\n%s", tail(log, 3000))
	}
	expectIntact(t, c.verify(u.Token, "A", n), 0)
	if _, err := os.Stat(filepath.Join(c.dir, "pallarel.sqlite3")); err != nil {
		t.Logf("note: %v", err)
	}
}
