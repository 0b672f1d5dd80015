package jobs_test

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/models"
)

// TestFailoverLosingJobsIsNoCancel: a failover to a replica that missed
// the last writes takes the run's queued rows with it. The supervisor must
// push them again, not read their disappearance as the dashboard's
// "Delete queue" and cancel the run (which it did: the rows vanished all
// at once between two passes, exactly as a deletion looks).
func TestFailoverLosingJobsIsNoCancel(t *testing.T) {
	t.Parallel()
	a := redistest.NewNode(t, "--repl-diskless-sync-delay", "0")
	b := redistest.NewNode(t, "--replicaof", "127.0.0.1", strconv.Itoa(a.Port))
	proxy := redistest.NewProxy(t, a.Addr)
	// Connections live briefly, so the pool's next ones go where the proxy
	// points, as clients of a managed Redis endpoint reconnect.
	pool := redistest.NewPool(proxy.Addr, 0)
	pool.MaxConnLifetime = 50 * time.Millisecond
	t.Cleanup(func() { pool.Close() })
	db := &redistest.DB{Addr: proxy.Addr, Pool: pool}
	e := newEnvWith(t, envOptions{redis: db, launch: func(context.Context, launcher.Request) error { return nil }})
	const rows = 30
	e, _, token := splitWithoutWorkerIn(t, e, rows)
	queue := e.queue(token)
	ctx := context.Background()
	waitFor(t, 20*time.Second, "the replica has the queue", func() bool {
		n, _ := redis.Int(b.Do("LLEN", "queue:"+queue), nil)
		return n == rows+1
	})
	if err := e.pipeline.Supervise(ctx); err != nil {
		t.Fatal(err)
	}

	// The replica is promoted without the row jobs (as if they had been
	// pushed after its last sync); the old primary follows it.
	b.Do("REPLICAOF", "NO", "ONE")
	raw, _ := redis.ByteSlices(b.Do("LRANGE", "queue:"+queue, 0, -1), nil)
	b.Do("DEL", "queue:"+queue)
	for _, r := range raw {
		if !bytes.Contains(r, []byte(`"pallarel_row"`)) {
			b.Do("RPUSH", "queue:"+queue, r) // the finalizer survived
		}
	}
	proxy.SetTarget(b.Addr)
	a.Do("REPLICAOF", "127.0.0.1", strconv.Itoa(b.Port))
	time.Sleep(100 * time.Millisecond) // past MaxConnLifetime: new connections reach b
	if n, _ := redis.Int(e.db.Do(t, "LLEN", "queue:"+queue), nil); n != 1 {
		t.Fatalf("after the failover the queue holds %d jobs, want only the finalizer", n)
	}

	for pass := 0; pass < 4; pass++ {
		if err := e.pipeline.Supervise(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st, err := e.models.StatusByToken(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if st.RunState() == models.RunCancelled {
		t.Fatalf("the run was cancelled after a failover lost its jobs: %q", st.StateReason)
	}
	if n, _ := redis.Int(e.db.Do(t, "LLEN", "queue:"+queue), nil); n != rows+1 {
		t.Fatalf("queue holds %d jobs after the supervisor's passes, want the %d rows pushed again and the finalizer", n, rows)
	}
}
