package sidekiq

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

func setupPoller(t *testing.T, d Dialect, now time.Time) (*redistest.DB, *poller) {
	t.Helper()
	db := redistest.New(t)
	return db, newPoller(pollerParams{
		pool:    db.Pool,
		log:     quietLogger(),
		dialect: d,
		now:     func() time.Time { return now },
		dead:    rdb.DeadLimits{MaxJobs: 10000, Timeout: 180 * 24 * time.Hour},
		quiet:   func() bool { return false },
	})
}

func TestPollerRunOnceMovesDueJobs(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	db, p := setupPoller(t, Dialect8, now)
	db.Do(t, "ZADD", "schedule", 1_799_999_999, `{"class":"X","args":[1],"jid":"s1","queue":"q","created_at":1799999000000}`)
	db.Do(t, "ZADD", "schedule", 1_800_000_100, `{"class":"X","args":[2],"jid":"later","queue":"q"}`)
	// Ruby's client fills queue and created_at: so does the poller.
	db.Do(t, "ZADD", "retry", 1_799_999_000, `{"class":"X","args":[3],"jid":"r1"}`)
	n, err := p.runOnce(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("moved %d, %v; want 2", n, err)
	}
	q, _ := redis.Strings(db.Do(t, "LRANGE", "queue:q", 0, -1), nil)
	if len(q) != 1 || !strings.Contains(q[0], `"created_at":1799999000000`) || !strings.Contains(q[0], `"enqueued_at":1800000000000`) {
		t.Fatalf("queue q = %q", q)
	}
	d, _ := redis.Strings(db.Do(t, "LRANGE", "queue:default", 0, -1), nil)
	if len(d) != 1 || !strings.Contains(d[0], `"created_at":1800000000000`) || !strings.Contains(d[0], `"queue":"default"`) {
		t.Fatalf("queue default = %q", d)
	}
	qs, _ := redis.Strings(db.Do(t, "SMEMBERS", "queues"), nil)
	if len(qs) != 2 {
		t.Fatalf("queues set %q", qs)
	}
	if n, _ := redis.Int(db.Do(t, "ZCARD", "schedule"), nil); n != 1 {
		t.Fatal("the future job moved too")
	}
}

// An entry that is not a job leaves its set for the dead set in one step,
// scored now, exactly as it was.
func TestPollerMovesBadEntryToDead(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 250_000_000)
	db, p := setupPoller(t, Dialect7, now)
	db.Do(t, "ZADD", "schedule", 1, "not json")
	if n, err := p.runOnce(context.Background()); err != nil || n != 0 {
		t.Fatalf("moved %d, %v", n, err)
	}
	if n, _ := redis.Int(db.Do(t, "ZCARD", "schedule"), nil); n != 0 {
		t.Fatal("bad entry left in schedule")
	}
	dead, _ := redis.Strings(db.Do(t, "ZRANGE", "dead", 0, -1, "WITHSCORES"), nil)
	if len(dead) != 2 || dead[0] != "not json" || dead[1] != "1800000000.25" {
		t.Fatalf("dead = %q", dead)
	}
}
