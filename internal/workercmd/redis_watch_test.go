package workercmd

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/sidekiq"
)

// TestExitsWhenRedisUnreachable runs a token worker with --idle-timeout 1s
// on a redis-server of its own. With work scheduled for its queue it is not
// idle and stays; once that redis-server is stopped, it exits with status 1
// soon after the idle timeout, saying why.
func TestExitsWhenRedisUnreachable(t *testing.T) {
	t.Parallel()
	own := redistest.NewOwn(t)
	pool := redistest.NewPool(own.Addr, 0)
	defer pool.Close()
	const queue = "report-0123456789abcdef"
	j, err := sidekiq.NewJob("Pallarel::Later")
	if err != nil {
		t.Fatal(err)
	}
	j.Queue, j.At = queue, time.Now().Add(time.Hour)
	if _, err := sidekiq.NewClient(pool, sidekiq.ClientOptions{}).Push(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"REDIS_URL": own.URL(0)}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	var stderr bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- Main(context.Background(), "test", []string{"-q", queue, "--idle-timeout", "1s", "-t", "1"}, lookup, &stderr,
			func(context.Context, *Env) (func(), error) { return nil, nil })
	}()
	// Up and beating: its process is listed.
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := pool.Get()
		n, _ := redis.Int(c.Do("SCARD", "processes"))
		c.Close()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Not idle while work is scheduled for it: three idle timeouts later it
	// still runs.
	select {
	case c := <-code:
		t.Fatalf("the worker exited with %d while Redis was up and work was scheduled", c)
	case <-time.After(3 * time.Second):
	}
	own.Stop()
	select {
	case c := <-code:
		if c != 1 {
			t.Errorf("exit status %d, want 1", c)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the worker still runs 60 s after Redis went away (idle timeout 1 s)")
	}
	if log := stderr.String(); !strings.Contains(log, "Redis unreachable for longer than the idle timeout") {
		t.Errorf("the log does not say why:\n%s", log)
	}
}

// TestExitsWhenRedisDemoted: a primary demoted to replica still answers
// PING, but the watch probes with ROLE, so a worker whose Redis stays a
// replica for longer than its idle timeout exits with status 1 (on ECS a
// new task then finds the promoted primary).
func TestExitsWhenRedisDemoted(t *testing.T) {
	t.Parallel()
	primary := redistest.NewNode(t)
	other := redistest.NewNode(t)
	const queue = "report-0123456789abcdef"
	// The same scheduled job on both, so the worker is never idle, before
	// or after the demoted node copies the other's data.
	for _, n := range []*redistest.Node{primary, other} {
		pool := redistest.NewPool(n.Addr, 0)
		j, err := sidekiq.NewJob("Pallarel::Later")
		if err != nil {
			t.Fatal(err)
		}
		j.Queue, j.At = queue, time.Now().Add(time.Hour)
		if _, err := sidekiq.NewClient(pool, sidekiq.ClientOptions{}).Push(context.Background(), j); err != nil {
			t.Fatal(err)
		}
		pool.Close()
	}
	env := map[string]string{"REDIS_URL": "redis://" + primary.Addr + "/0"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	var stderr e2etest.Buffer
	code := make(chan int, 1)
	go func() {
		code <- Main(context.Background(), "test", []string{"-q", queue, "--idle-timeout", "1s", "-t", "1"}, lookup, &stderr,
			func(context.Context, *Env) (func(), error) { return nil, nil })
	}()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if n, _ := redis.Int(primary.Try("SCARD", "processes")); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker did not start")
		}
	}
	select {
	case c := <-code:
		t.Fatalf("the worker exited with %d while its Redis was a master", c)
	case <-time.After(3 * time.Second):
	}
	primary.Do("REPLICAOF", "127.0.0.1", other.Port)
	select {
	case c := <-code:
		if c != 1 {
			t.Errorf("exit status %d, want 1", c)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the worker still runs 60 s after its Redis became a replica (idle timeout 1 s)")
	}
	if log := stderr.String(); !strings.Contains(log, "not the master") {
		t.Errorf("the log does not say why:\n%s", log)
	}
}
