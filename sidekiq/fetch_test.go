package sidekiq

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

func testFetcher(t *testing.T, db *redistest.DB, identity string, queues ...QueueWeight) *fetcher {
	t.Helper()
	gone := make(chan struct{})
	t.Cleanup(func() { close(gone) })
	return newFetcher(db.Pool, identity, newQueueOrder(queues), quietLogger(), rdb.DeadLimits{MaxJobs: 10, Timeout: time.Hour}, gone)
}

func jobsOf(us []*UnitOfWork) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Queue + ":" + string(u.Raw)
	}
	return out
}

// One round trip takes a job for every free processor, in strict queue
// order, oldest first; reliable fetch leaves the in-flight list as one
// LMOVE per job would (newest at the head), so recovery runs the oldest
// first.
func TestFetchTakesManyInOrder(t *testing.T) {
	for _, reliable := range []bool{true, false} {
		t.Run(fmt.Sprintf("reliable=%v", reliable), func(t *testing.T) {
			db := redistest.New(t)
			identity := ""
			if reliable {
				identity = "host:1:abcdefabcdef"
			}
			f := testFetcher(t, db, identity, QueueWeight{Name: "a"}, QueueWeight{Name: "b"})
			// LPUSH: a1 is the oldest, at the right end.
			db.Do(t, "LPUSH", "queue:a", "a1", "a2", "a3")
			db.Do(t, "LPUSH", "queue:b", "b1", "b2")
			us, err := f.fetch(context.Background(), 4)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := jobsOf(us), []string{"a:a1", "a:a2", "a:a3", "b:b1"}; !slices.Equal(got, want) {
				t.Fatalf("fetched %q, want %q", got, want)
			}
			if left, _ := redis.Strings(db.Do(t, "LRANGE", "queue:b", 0, -1), nil); !slices.Equal(left, []string{"b2"}) {
				t.Fatalf("queue b = %q", left)
			}
			inflight, _ := redis.Strings(db.Do(t, "LRANGE", "pallarel:inflight|host:1:abcdefabcdef|a", 0, -1), nil)
			if reliable && !slices.Equal(inflight, []string{"a3", "a2", "a1"}) {
				t.Fatalf("in flight = %q, want newest first", inflight)
			}
			if !reliable && len(inflight) != 0 {
				t.Fatalf("basic fetch wrote in flight: %q", inflight)
			}
		})
	}
}

// Weighted order is drawn per job: the per-job script still serves it.
func TestFetchWeightedTakesMany(t *testing.T) {
	db := redistest.New(t)
	f := testFetcher(t, db, "host:1:abcdefabcdef", QueueWeight{Name: "a", Weight: 3}, QueueWeight{Name: "b", Weight: 1})
	db.Do(t, "LPUSH", "queue:a", "a1", "a2")
	db.Do(t, "LPUSH", "queue:b", "b1", "b2")
	us, err := f.fetch(context.Background(), 4)
	if err != nil || len(us) != 4 {
		t.Fatalf("fetched %q, %v; want all 4", jobsOf(us), err)
	}
}

// A finished job's acknowledgement rides the next fetch round trip; while
// the fetch waits on empty queues the acker writes it at once.
func TestAcksGroupCommitted(t *testing.T) {
	db := redistest.New(t)
	f := testFetcher(t, db, "host:1:abcdefabcdef", QueueWeight{Name: "q"})
	const inflight = "pallarel:inflight|host:1:abcdefabcdef|q"
	db.Do(t, "LPUSH", "queue:q", "j1", "j2", "j3")
	ctx := context.Background()
	us, err := f.fetch(ctx, 2)
	if err != nil || len(us) != 2 {
		t.Fatalf("fetch: %q %v", jobsOf(us), err)
	}
	f.ack(us[0])
	if n, _ := redis.Int(db.Do(t, "LLEN", inflight), nil); n != 2 {
		t.Fatalf("in flight %d before the next fetch, want 2 (the ack waits for it)", n)
	}
	more, err := f.fetch(ctx, 1)
	if err != nil || len(more) != 1 {
		t.Fatalf("fetch: %q %v", jobsOf(more), err)
	}
	left, _ := redis.Strings(db.Do(t, "LRANGE", inflight, 0, -1), nil)
	if !slices.Equal(left, []string{"j3", "j2"}) {
		t.Fatalf("in flight after the fetch = %q, want j1 acknowledged", left)
	}

	// Queue empty: the next fetch blocks; an ack made meanwhile is written
	// by the acker without waiting for the fetch to return.
	f.startAcker()
	defer f.stopAcker()
	blocked := make(chan struct{})
	go func() {
		defer close(blocked)
		_, _ = f.fetch(ctx, 1)
	}()
	for !f.acks.isWaiting() {
		time.Sleep(time.Millisecond)
	}
	f.ack(us[1])
	deadline := time.Now().Add(fetchWait)
	for {
		left, _ := redis.Strings(db.Do(t, "LRANGE", inflight, 0, -1), nil)
		if slices.Equal(left, []string{"j3"}) {
			break
		}
		select {
		case <-blocked:
			t.Fatalf("in flight %q: the ack waited for the blocked fetch to return", left)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("in flight %q: ack not written", left)
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.ack(more[0])
	f.stopAcker()
	if n, _ := redis.Int(db.Do(t, "LLEN", inflight), nil); n != 0 {
		t.Fatalf("in flight %d after stop, want every ack written", n)
	}
	<-blocked
	if len(f.held.held) != 0 {
		t.Fatalf("held after every ack: %v", f.held.held)
	}
}

// While Redis refuses writes the acker keeps retrying; stopping it still
// returns after a few more tries (the job stays in flight and goes back
// with the rest at shutdown) instead of hanging the shutdown.
func TestAckerStopsDuringOutage(t *testing.T) {
	db := redistest.New(t)
	f := testFetcher(t, db, "host:1:abcdefabcdef", QueueWeight{Name: "q"})
	db.Do(t, "LPUSH", "queue:q", "j1")
	us, err := f.fetch(context.Background(), 1)
	if err != nil || len(us) != 1 {
		t.Fatalf("fetch: %q %v", jobsOf(us), err)
	}
	db.Do(t, "CONFIG", "SET", "min-replicas-to-write", "1")
	f.startAcker()
	f.acks.setWaiting(true)
	f.ack(us[0])
	stopped := make(chan struct{})
	go func() { f.stopAcker(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("stopAcker did not return while Redis refused writes")
	}
	db.Do(t, "CONFIG", "SET", "min-replicas-to-write", "0")
	if n, _ := redis.Int(db.Do(t, "LLEN", "pallarel:inflight|host:1:abcdefabcdef|q"), nil); n != 1 {
		t.Fatalf("in flight %d, want the unacknowledged job kept", n)
	}
}
