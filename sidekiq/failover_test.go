package sidekiq

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

func TestIsFailoverError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{redis.Error("READONLY You can't write against a read only replica."), true},
		{redis.Error("NOREPLICAS Not enough good replicas to write."), true},
		{redis.Error("UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)"), true},
		{redis.Error("LOADING Redis is loading the dataset in memory"), true},
		{redis.Error("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."), true},
		{fmt.Errorf("push: %w", redis.Error("READONLY You can't write against a read only replica.")), true},
		{redis.Error("ERR Error running script (call to f_1): @user_script:1: -READONLY You can't write against a read only replica. "), true},
		{redis.Error("ERR unknown command 'READONLYX'"), false},
		{redis.Error("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{errors.New("READONLY but not a Redis reply"), false},
		{nil, false},
	} {
		if got := IsFailoverError(tc.err); got != tc.want {
			t.Errorf("IsFailoverError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// failoverCase is a pool that reaches bad through a proxy, and a healthy
// primary good the proxy is switched to once the pool's connection is
// open on bad: the connection already made stays on bad, as after a
// managed Redis's failover, and only a fresh one reaches good.
type failoverCase struct {
	bad, good *redistest.Node
	proxy     *redistest.Proxy
	pool      *redis.Pool
	before    map[string]int // bad's error counts when conn was opened
}

func newFailoverCase(t *testing.T, bad, good *redistest.Node) *failoverCase {
	t.Helper()
	fc := &failoverCase{bad: bad, good: good, proxy: redistest.NewProxy(t, bad.Addr)}
	pool, err := NewPool("redis://"+fc.proxy.Addr+"/0", 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	fc.pool = pool
	return fc
}

// conn opens a pool connection on bad, then points the proxy at good.
func (fc *failoverCase) conn(t *testing.T) redis.Conn {
	t.Helper()
	c := fc.pool.Get()
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for deadline := time.Now().Add(10 * time.Second); fc.proxy.Dialed(fc.bad.Addr) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the proxy never forwarded the pool's connection")
		}
	}
	fc.proxy.SetTarget(fc.good.Addr)
	fc.before = map[string]int{}
	for _, code := range failoverCodes {
		fc.before[code] = errorCount(t, fc.bad, code)
	}
	return c
}

// landed checks bad really answered the error to the pool's connection:
// its errorstat_<code> grew.
func (fc *failoverCase) landed(t *testing.T, code string) {
	t.Helper()
	if n := errorCount(t, fc.bad, code); n <= fc.before[code] {
		t.Fatalf("%s answered %s %d times, as before the command: the fault did not land", fc.bad.Addr, code, n)
	}
}

func errorCount(t *testing.T, n *redistest.Node, code string) int {
	t.Helper()
	stat := n.Info("errorstat_" + code) // count=N
	c, _ := strconv.Atoi(strings.TrimPrefix(stat, "count="))
	return c
}

// TestFailoverDropAndRetry sends one command on a connection whose server
// answers each of the five failover errors: the command succeeds on a
// fresh connection (to the new primary), the connection stays usable, and
// the pool never hands out the old one again.
func TestFailoverDropAndRetry(t *testing.T) {
	good := redistest.NewNode(t)
	good.Do("SET", "k", "on-good")
	for _, tc := range []struct {
		code string
		bad  func(t *testing.T) *redistest.Node
		cmd  []any
		want string
	}{
		{"READONLY", func(t *testing.T) *redistest.Node {
			return redistest.NewNode(t, "--replicaof", "127.0.0.1", strconv.Itoa(good.Port))
		}, []any{"SET", "w", "readonly"}, "OK"},
		{"NOREPLICAS", func(t *testing.T) *redistest.Node {
			return redistest.NewNode(t, "--min-replicas-to-write", "1")
		}, []any{"SET", "w", "noreplicas"}, "OK"},
		{"MASTERDOWN", func(t *testing.T) *redistest.Node {
			return redistest.NewNode(t, "--replicaof", "127.0.0.1", strconv.Itoa(redistest.FreePort(t)),
				"--replica-serve-stale-data", "no")
		}, []any{"GET", "k"}, "on-good"},
		{"LOADING", loadingNode, []any{"SET", "w", "loading"}, "OK"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			fc := newFailoverCase(t, tc.bad(t), good)
			c := fc.conn(t)
			got, err := redis.String(c.Do(tc.cmd[0].(string), tc.cmd[1:]...))
			if err != nil || got != tc.want {
				t.Fatalf("%v = %q, %v; want %q on a fresh connection", tc.cmd, got, err, tc.want)
			}
			fc.landed(t, tc.code)
			if tc.cmd[0] == "SET" {
				if v, _ := redis.String(good.Try("GET", "w")); v != tc.cmd[2] {
					t.Fatalf("the new primary has w=%q, want %q", v, tc.cmd[2])
				}
			}
			if err := c.Err(); err != nil {
				t.Fatalf("the healed connection reports %v", err)
			}
			if role, _ := redis.Values(c.Do("ROLE")); roleOf(role) != "master" {
				t.Fatalf("the healed connection reaches a %q", roleOf(role))
			}
		})
	}
	t.Run("UNBLOCKED", func(t *testing.T) {
		bad := redistest.NewNode(t)
		fc := newFailoverCase(t, bad, good)
		c := fc.conn(t)
		type result struct {
			v   string
			err error
		}
		done := make(chan result, 1)
		go func() {
			v, err := redis.String(redis.DoWithTimeout(c, 20*time.Second, "BLMOVE", "src", "dst", "RIGHT", "LEFT", 15))
			done <- result{v, err}
		}()
		waitInfo(t, bad, "blocked_clients", "1")
		bad.Do("REPLICAOF", "127.0.0.1", strconv.Itoa(good.Port))
		fc.landed(t, "UNBLOCKED")
		// The BLMOVE is sent again on good, where it blocks until a job
		// comes.
		waitInfo(t, good, "blocked_clients", "1")
		good.Do("LPUSH", "src", "job")
		r := <-done
		if r.err != nil || r.v != "job" {
			t.Fatalf("BLMOVE = %q, %v; want the job from the new primary", r.v, r.err)
		}
	})
}

// TestFailoverDropsTransaction: a MULTI cannot be replayed halfway, so its
// caller gets the error; the connection is dropped, and the next one the
// pool hands out reaches the new primary.
func TestFailoverDropsTransaction(t *testing.T) {
	good := redistest.NewNode(t)
	bad := redistest.NewNode(t, "--replicaof", "127.0.0.1", strconv.Itoa(good.Port))
	fc := newFailoverCase(t, bad, good)
	c := fc.conn(t)
	_ = c.Send("MULTI")
	_ = c.Send("SET", "t", "1")
	_, err := c.Do("EXEC")
	if err == nil {
		t.Fatal("EXEC on a replica succeeded")
	}
	fc.landed(t, "READONLY")
	if c.Err() == nil {
		t.Fatal("the connection was kept after READONLY in a transaction")
	}
	c.Close()
	c2 := fc.pool.Get()
	defer c2.Close()
	if _, err := c2.Do("SET", "t", "2"); err != nil {
		t.Fatalf("the pool's next connection: %v", err)
	}
	if fc.pool.IdleCount() != 0 {
		t.Fatalf("%d idle connections: the dropped one went back to the pool", fc.pool.IdleCount())
	}
}

// TestFailoverRoleDrops: a connection whose ROLE says replica (the Redis
// watch's probe) is dropped, so the next borrower dials afresh.
func TestFailoverRoleDrops(t *testing.T) {
	good := redistest.NewNode(t)
	bad := redistest.NewNode(t, "--replicaof", "127.0.0.1", strconv.Itoa(good.Port))
	fc := newFailoverCase(t, bad, good)
	c := fc.conn(t)
	role, err := redis.Values(c.Do("ROLE"))
	if err != nil || roleOf(role) != "slave" {
		t.Fatalf("ROLE = %q, %v", roleOf(role), err)
	}
	if c.Err() == nil {
		t.Fatal("a replica's connection was kept")
	}
	c.Close()
	c2 := fc.pool.Get()
	defer c2.Close()
	if role, _ := redis.Values(c2.Do("ROLE")); roleOf(role) != "master" {
		t.Fatalf("the next connection reaches a %q", roleOf(role))
	}
}

// loadingNode is a redis-server still loading a data set of 100,000 keys,
// 30 us each: about 3 s of LOADING, answering clients every KiB loaded.
func loadingNode(t *testing.T) *redistest.Node {
	n := redistest.NewNode(t, "--enable-debug-command", "yes")
	n.Do("DEBUG", "POPULATE", 100000)
	n.Do("SAVE")
	n.Restart("--key-load-delay", "30", "--loading-process-events-interval-bytes", "1024")
	if _, err := n.Try("GET", "x"); !IsFailoverError(err) {
		t.Fatalf("the restarted server is not loading: %v", err)
	}
	return n
}

func waitInfo(t *testing.T, n *redistest.Node, field, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.Info(field) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s %s = %q, want %q", n.Addr, field, n.Info(field), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
