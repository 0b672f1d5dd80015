package sidekiq

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

// A Redis that restarted empty forgets pallarel:inflight; the next beat
// must write the registration again, or a process killed after that would
// leave its in-flight lists where nobody looks.
func TestHeartbeatReassertsInflightRegistration(t *testing.T) {
	db := redistest.New(t)
	srv, _ := NewServer(db.Pool, NewRegistry(), Options{Queues: []QueueWeight{{Name: "a"}, {Name: "b"}}, Logger: quietLogger()})
	ctx := context.Background()
	if err := newServerParts(srv).heartbeat.runOnce(ctx); err != nil {
		t.Fatal(err)
	}
	db.Do(t, "FLUSHDB")
	if err := newServerParts(srv).heartbeat.runOnce(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"a", "b"} {
		if ok, _ := redis.Bool(db.Do(t, "SISMEMBER", "pallarel:inflight", srv.Identity()+"|"+q), nil); !ok {
			t.Fatalf("queue %s: in-flight registration not written again after the data was lost", q)
		}
	}
}

// An entry on the process's own in-flight list that no processor holds (a
// settle that never reached Redis) goes back to its queue at the second
// check; held entries stay.
func TestOwnUnheldInflightEntriesGivenBack(t *testing.T) {
	db := redistest.New(t)
	srv, _ := NewServer(db.Pool, NewRegistry(), Options{Queues: []QueueWeight{{Name: "q"}}, Logger: quietLogger()})
	rf := srv.fetcher
	ctx := context.Background()
	db.Do(t, "LPUSH", "queue:q", `{"class":"X","args":[1],"jid":"held1","queue":"q"}`)
	us, err := rf.fetch(ctx, 1)
	if err != nil || len(us) != 1 {
		t.Fatalf("fetch: %v %v", us, err)
	}
	parked := `{"class":"X","args":[2],"jid":"parked","queue":"q"}`
	db.Do(t, "LPUSH", "pallarel:inflight|"+srv.Identity()+"|q", parked)

	if n, err := rf.recoverUnheld(ctx); err != nil || n != 0 {
		t.Fatalf("first check gave back %d, %v: an entry must be seen unheld twice", n, err)
	}
	if n, err := rf.recoverUnheld(ctx); err != nil || n != 1 {
		t.Fatalf("second check gave back %d, %v; want 1", n, err)
	}
	q, _ := redis.Strings(db.Do(t, "LRANGE", "queue:q", 0, -1), nil)
	if len(q) != 1 || !strings.Contains(q[0], "parked") {
		t.Fatalf("queue = %q, want the parked job", q)
	}
	left, _ := redis.Strings(db.Do(t, "LRANGE", "pallarel:inflight|"+srv.Identity()+"|q", 0, -1), nil)
	if len(left) != 1 || !strings.Contains(left[0], "held1") {
		t.Fatalf("in flight = %q, want only the held job", left)
	}
	// Once settled, the held job is no longer tracked.
	rf.ack(us[0])
	rf.flushAcks(nil)
	if len(rf.held.held) != 0 {
		t.Fatalf("held after ack: %v", rf.held.held)
	}
}

// A failed job's settle that meets a Redis outage is retried until Redis
// answers, so the job reaches the retry set instead of staying in flight.
func TestSettleRetriedAcrossRedisOutage(t *testing.T) {
	db := redistest.New(t)
	srv, _ := NewServer(db.Pool, NewRegistry(), Options{Queues: []QueueWeight{{Name: "q"}}, Logger: quietLogger()})
	u := &UnitOfWork{Queue: "q", Raw: []byte(`{"class":"X","args":[],"jid":"s1","queue":"q"}`)}
	// Redis refuses writes (a stand-in for "down" that keeps the server
	// up): settle must keep trying and succeed once writes are allowed.
	db.Do(t, "CONFIG", "SET", "min-replicas-to-write", "1")
	done := make(chan struct{})
	go func() {
		srv.fetcher.settle(context.Background(), u, func(c redis.Conn) error {
			_, err := c.Do("ZADD", "retry", 1, u.Raw)
			return err
		})
		close(done)
	}()
	time.Sleep(500 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("settle returned while Redis refused the write")
	default:
	}
	db.Do(t, "CONFIG", "SET", "min-replicas-to-write", "0")
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("settle did not finish after Redis answered again")
	}
	if n, _ := redis.Int(db.Do(t, "ZCARD", "retry"), nil); n != 1 {
		t.Fatalf("retry set has %d entries, want 1", n)
	}
}
