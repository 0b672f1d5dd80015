package sidekiq

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

// deferringHandler registers class: each job defers its acknowledgement
// and hands its Settle to settles (or, when DeferAck refuses, records that).
func deferringHandler(t *testing.T, reg *Registry, class string, settles chan<- Settle, refused chan<- string) {
	t.Helper()
	if err := reg.Register(func(ctx context.Context, j *Job) error {
		settle, ok := DeferAck(ctx)
		if !ok {
			refused <- j.JID
			return nil
		}
		settles <- settle
		return nil
	}, class); err != nil {
		t.Fatal(err)
	}
}

func inflightLen(t *testing.T, db *redistest.DB, srv *Server, queue string) int {
	t.Helper()
	c := db.Pool.Get()
	defer c.Close()
	n, err := rdb.InflightLen(c, srv.identity, queue)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func pushN(t *testing.T, srv *Server, class, queue string, n int) []string {
	t.Helper()
	var jids []string
	for i := range n {
		j, err := NewJob(class, i)
		if err != nil {
			t.Fatal(err)
		}
		j.Queue = queue
		if _, err := srv.Client().Push(context.Background(), j); err != nil {
			t.Fatal(err)
		}
		jids = append(jids, j.JID)
	}
	return jids
}

// A deferred job frees its processor at once (one processor runs all
// three), stays in flight until settled, and is acknowledged by a nil
// Settle or retried by an error, as a handler's return would.
func TestDeferAckSettlesLater(t *testing.T) {
	db := redistest.New(t)
	reg := NewRegistry()
	settles, refused := make(chan Settle, 10), make(chan string, 10)
	deferringHandler(t, reg, "Deferred", settles, refused)
	srv := startServer(t, db, reg, Options{Queues: []QueueWeight{{Name: "q"}}, Concurrency: 1})
	pushN(t, srv, "Deferred", "q", 3)
	var got []Settle
	for len(got) < 3 {
		select {
		case s := <-settles:
			got = append(got, s)
		case jid := <-refused:
			t.Fatalf("DeferAck refused job %s under reliable fetch", jid)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 3 handlers ran: the processor stayed taken", len(got))
		}
	}
	if n := inflightLen(t, db, srv, "q"); n != 3 {
		t.Fatalf("in flight before any settle: %d, want 3", n)
	}
	if n := srv.deferred.count(); n != 3 {
		t.Fatalf("deferred count %d, want 3", n)
	}
	got[0](nil)
	got[0](errors.New("a second settle must not count"))
	got[1](nil)
	got[2](errors.New("commit failed"))
	waitFor(t, 5*time.Second, "in-flight list emptied", func() bool { return inflightLen(t, db, srv, "q") == 0 })
	retries, _ := redis.Strings(db.Do(t, "ZRANGE", "retry", 0, -1), nil)
	if len(retries) != 1 || !strings.Contains(retries[0], "commit failed") {
		t.Fatalf("retry set: %q, want the one job whose settle failed", retries)
	}
	if n, _ := redis.Int(db.Do(t, "LLEN", "queue:q"), nil); n != 0 {
		t.Fatalf("queue holds %d jobs, want 0", n)
	}
	if n := srv.deferred.count(); n != 0 {
		t.Fatalf("deferred count %d after settling, want 0", n)
	}
}

// A Settle that comes before the handler returns (the commit was quick)
// acknowledges the job once it returns; a handler error wins over a
// deferral and a later Settle is moot.
func TestDeferAckSettleFirstAndHandlerError(t *testing.T) {
	db := redistest.New(t)
	reg := NewRegistry()
	lateSettle := make(chan Settle, 1)
	reg.Register(func(ctx context.Context, j *Job) error {
		settle, ok := DeferAck(ctx)
		if !ok {
			return errors.New("refused")
		}
		settle(nil)
		return nil
	}, "Quick")
	reg.Register(func(ctx context.Context, j *Job) error {
		settle, ok := DeferAck(ctx)
		if !ok {
			return errors.New("refused")
		}
		lateSettle <- settle
		return errors.New("render failed")
	}, "Fails")
	srv := startServer(t, db, reg, Options{Queues: []QueueWeight{{Name: "q"}}, Concurrency: 2})
	pushN(t, srv, "Quick", "q", 5)
	waitFor(t, 5*time.Second, "quick jobs acknowledged", func() bool {
		n, _ := redis.Int(db.Do(t, "LLEN", "queue:q"), nil)
		return n == 0 && inflightLen(t, db, srv, "q") == 0
	})
	pushN(t, srv, "Fails", "q", 1)
	s := <-lateSettle
	waitFor(t, 5*time.Second, "failed job in retry", func() bool {
		n, _ := redis.Int(db.Do(t, "ZCARD", "retry"), nil)
		return n == 1 && inflightLen(t, db, srv, "q") == 0
	})
	s(nil) // moot: the job was settled by its error
	if n := srv.deferred.count(); n != 0 {
		t.Fatalf("deferred count %d, want 0", n)
	}
	if n, _ := redis.Int(db.Do(t, "ZCARD", "retry"), nil); n != 1 {
		t.Fatalf("retry set holds %d, want 1", n)
	}
}

// A job still waiting on its Settle when the server stops goes back to
// its queue (it runs again; nothing is lost), after the grace period.
func TestDeferAckUnsettledAtStopGoesBack(t *testing.T) {
	db := redistest.New(t)
	reg := NewRegistry()
	settles, refused := make(chan Settle, 10), make(chan string, 10)
	deferringHandler(t, reg, "Deferred", settles, refused)
	srv, err := NewServer(db.Pool, reg, Options{Queues: []QueueWeight{{Name: "q"}}, Timeout: 300 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	jids := pushN(t, srv, "Deferred", "q", 2)
	first := <-settles
	<-settles
	first(nil) // settled before the stop: acknowledged, not given back
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("server did not stop")
	}
	raw, _ := redis.Strings(db.Do(t, "LRANGE", "queue:q", 0, -1), nil)
	if len(raw) != 1 || !strings.Contains(raw[0], jids[1]) {
		t.Fatalf("queue after stop: %q, want only the unsettled job %s", raw, jids[1])
	}
	if n := inflightLen(t, db, srv, "q"); n != 0 {
		t.Fatalf("in flight after stop: %d", n)
	}
}

// Under basic fetch nothing is in flight, so a deferred job would be lost
// to a kill: DeferAck refuses, and so it does outside a server.
func TestDeferAckRefusedWithoutReliableFetch(t *testing.T) {
	if _, ok := DeferAck(context.Background()); ok {
		t.Fatal("DeferAck outside a server said yes")
	}
	db := redistest.New(t)
	reg := NewRegistry()
	settles, refused := make(chan Settle, 10), make(chan string, 10)
	deferringHandler(t, reg, "Deferred", settles, refused)
	srv := startServer(t, db, reg, Options{Queues: []QueueWeight{{Name: "q"}}, BasicFetch: true})
	jids := pushN(t, srv, "Deferred", "q", 1)
	select {
	case jid := <-refused:
		if jid != jids[0] {
			t.Fatalf("refused %s, want %s", jid, jids[0])
		}
	case <-settles:
		t.Fatal("DeferAck deferred a job under basic fetch")
	case <-time.After(10 * time.Second):
		t.Fatal("job did not run")
	}
}
