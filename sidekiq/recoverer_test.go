package sidekiq

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

func TestRecovererRunOnce(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	// A dead process's list, a live one's, and our own.
	for _, id := range []string{"dead:1:aaaaaaaaaaaa", "live:2:bbbbbbbbbbbb", "self:3:cccccccccccc"} {
		db.Do(t, "SADD", "pallarel:inflight", id+"|q")
		db.Do(t, "LPUSH", "pallarel:inflight|"+id+"|q", job("j-"+id[:4]+"-1", "q"), job("j-"+id[:4]+"-2", "q"))
	}
	db.Do(t, "HSET", "live:2:bbbbbbbbbbbb", "info", "{}")
	ownCalls := 0
	r := newRecoverer(recovererParams{
		pool:     db.Pool,
		log:      quietLogger(),
		identity: "self:3:cccccccccccc",
		interval: time.Hour,
		ownUnheld: func(context.Context) (int, error) {
			ownCalls++
			return 1, nil
		},
	})
	n, err := r.runOnce(context.Background())
	if err != nil || n != 3 {
		t.Fatalf("recovered %d, %v; want the dead process's 2 and 1 of our own", n, err)
	}
	q, _ := redis.Strings(db.Do(t, "LRANGE", "queue:q", 0, -1), nil)
	if len(q) != 2 || !strings.Contains(q[1], "j-dead-1") {
		t.Fatalf("queue %q: the dead process's oldest job must run next", q)
	}
	for _, id := range []string{"live:2:bbbbbbbbbbbb", "self:3:cccccccccccc"} {
		if l, _ := redis.Int(db.Do(t, "LLEN", "pallarel:inflight|"+id+"|q"), nil); l != 2 {
			t.Fatalf("%s's list touched", id)
		}
	}
	if ok, _ := redis.Bool(db.Do(t, "SISMEMBER", "pallarel:inflight", "dead:1:aaaaaaaaaaaa|q"), nil); ok {
		t.Fatal("dead owner still indexed")
	}
	if ownCalls != 1 {
		t.Fatalf("own check ran %d times", ownCalls)
	}
}

// A failing own check does not stop orphans from coming back.
func TestRecovererOwnCheckErrorKeepsOrphanRecovery(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	db.Do(t, "SADD", "pallarel:inflight", "dead:1:aaaaaaaaaaaa|q")
	db.Do(t, "LPUSH", "pallarel:inflight|dead:1:aaaaaaaaaaaa|q", job("j1", "q"))
	boom := errors.New("boom")
	r := newRecoverer(recovererParams{
		pool: db.Pool, log: quietLogger(), identity: "self:3:cccccccccccc", interval: time.Hour,
		ownUnheld: func(context.Context) (int, error) { return 0, boom },
	})
	n, err := r.runOnce(context.Background())
	if n != 1 || !errors.Is(err, boom) {
		t.Fatalf("recovered %d, %v; want 1 and the own check's error", n, err)
	}
}
