package sidekiq_test

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

// TestKillWorkerLosesNoPrefetchedJob SIGKILLs a worker that holds
// prefetched jobs beside its running ones: they are on its in-flight list,
// so a second worker recovers and runs them, and only the jobs that were
// running may run twice.
func TestKillWorkerLosesNoPrefetchedJob(t *testing.T) {
	bin := buildTestworker(t)
	db := redistest.New(t)
	const total, conc = 8, 2
	jids := pushSleepJobs(t, db, "pre", total, func(int) int { return 1500 })
	args := []string{"-q", "pre", "-c", "2", "--prefetch", "2", "--process-ttl", "3s"}

	a := startWorker(t, bin, "worker-a", db, args...)
	inflight := func() int {
		keys, _ := redis.Strings(db.Do(t, "KEYS", "pallarel:inflight|*|pre"), nil)
		n := 0
		for _, k := range keys {
			l, _ := redis.Int(db.Do(t, "LLEN", k), nil)
			n += l
		}
		return n
	}
	pollUntil(t, 10*time.Second, "2 running and 2 prefetched jobs in flight", a, func() bool {
		q, _ := redis.Int(db.Do(t, "LLEN", "queue:pre"), nil)
		return inflight() == 2*conc && q == total-2*conc
	})
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 10*time.Second)
	if n := inflight(); n != 2*conc {
		t.Fatalf("%d jobs in flight after SIGKILL, want %d", n, 2*conc)
	}

	b := startWorker(t, bin, "worker-b", db, args...)
	pollUntil(t, 60*time.Second, "all jobs done", b, func() bool { return scardDone(t, db) == total })
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := b.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("worker B exit code %d after SIGTERM, want 0", code)
	}
	if !strings.Contains(tail(b.log, 1<<30), "recovered jobs of a dead process") {
		t.Error("worker B never logged recovering worker A's in-flight jobs")
	}
	if dups := checkAllRan(t, db, "pre", jids); dups > conc {
		t.Errorf("%d jobs ran twice, want at most %d (the ones A was running)", dups, conc)
	}
}
