package sidekiq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
)

// failoverCodes are the Redis error codes that say this connection reaches
// a server that cannot take the command now, while another (the promoted
// primary, or the same name once redialled) can: a primary demoted to
// replica (READONLY, and UNBLOCKED for a blocked BLMOVE), a primary that
// lost its replicas (NOREPLICAS), a replica cut from its master
// (MASTERDOWN) and a server still loading its data set (LOADING). Sidekiq
// closes the connection on the first three and retries once (config.rb
// `redis`, client.rb); redis-client reconnects on READONLY too. PING
// answers on a replica, so nothing else would notice.
var failoverCodes = []string{"READONLY", "NOREPLICAS", "UNBLOCKED", "LOADING", "MASTERDOWN"}

// IsFailoverError reports whether err is a Redis error reply that means
// the connection should be dropped and the command sent again on a fresh
// one.
func IsFailoverError(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := string(re)
	for _, code := range failoverCodes {
		// The code leads a plain reply; inside a Lua script's error it
		// follows the script's own prefix ("ERR ... -READONLY ...").
		if strings.HasPrefix(msg, code+" ") || msg == code || strings.Contains(msg, "-"+code+" ") {
			return true
		}
	}
	return false
}

// errDropped is what a failover connection reports from Err once a reply
// told it to leave its server, so the pool closes it instead of keeping
// it idle.
type errDropped struct{ cause error }

func (e errDropped) Error() string {
	return fmt.Sprintf("redis connection dropped after %v", e.cause)
}

func (e errDropped) Unwrap() error { return e.cause }

// failoverConn is a connection that heals after a failover. A failover
// error reply (IsFailoverError) marks it dropped: Err reports it, so the
// pool closes it on Close instead of handing it out again. A Do that was
// the connection's only outstanding command (no pipelined Sends, no MULTI
// or WATCH open) is sent once more on a freshly dialled connection, which
// through a DNS name, a proxy or Sentinel reaches the new primary: a
// transaction or pipeline cannot be replayed halfway, so its caller gets
// the error and retries as it does on any Redis error.
//
// A ROLE reply of "slave" drops the connection too (the Redis watch
// probes with ROLE), so the next borrower dials afresh.
type failoverConn struct {
	redis.Conn
	dial func(context.Context) (redis.Conn, error)

	mu      sync.Mutex // Close may come from another goroutine than Do
	pending int        // Sends not yet received
	txn     bool       // inside WATCH or MULTI: a retry would lose it
	dropped error
}

func newFailoverConn(c redis.Conn, dial func(context.Context) (redis.Conn, error)) *failoverConn {
	return &failoverConn{Conn: c, dial: dial}
}

func (c *failoverConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.Close()
}

func (c *failoverConn) Err() error {
	c.mu.Lock()
	dropped := c.dropped
	c.mu.Unlock()
	if dropped != nil {
		return dropped
	}
	return c.Conn.Err()
}

func (c *failoverConn) Send(cmd string, args ...any) error {
	c.note(cmd)
	c.pending++
	return c.Conn.Send(cmd, args...)
}

func (c *failoverConn) Receive() (any, error) {
	return c.received(c.Conn.Receive())
}

func (c *failoverConn) ReceiveContext(ctx context.Context) (any, error) {
	return c.received(redis.ReceiveContext(c.Conn, ctx))
}

func (c *failoverConn) ReceiveWithTimeout(d time.Duration) (any, error) {
	return c.received(redis.ReceiveWithTimeout(c.Conn, d))
}

func (c *failoverConn) received(reply any, err error) (any, error) {
	if c.pending > 0 {
		c.pending--
	}
	c.check("", reply, err)
	return reply, err
}

func (c *failoverConn) Do(cmd string, args ...any) (any, error) {
	return c.do(context.Background(), cmd, func(conn redis.Conn) (any, error) { return conn.Do(cmd, args...) })
}

func (c *failoverConn) DoContext(ctx context.Context, cmd string, args ...any) (any, error) {
	return c.do(ctx, cmd, func(conn redis.Conn) (any, error) { return redis.DoContext(conn, ctx, cmd, args...) })
}

func (c *failoverConn) DoWithTimeout(d time.Duration, cmd string, args ...any) (any, error) {
	return c.do(context.Background(), cmd, func(conn redis.Conn) (any, error) { return redis.DoWithTimeout(conn, d, cmd, args...) })
}

func (c *failoverConn) do(ctx context.Context, cmd string, send func(redis.Conn) (any, error)) (any, error) {
	alone := cmd != "" && c.pending == 0 && !c.txn
	c.note(cmd)
	reply, err := send(c.Conn)
	c.pending = 0 // Do reads every pending reply
	if !c.check(cmd, reply, err) || !alone {
		return reply, err
	}
	fresh, derr := c.dial(ctx)
	if derr != nil {
		return reply, fmt.Errorf("%w (and no fresh connection: %w)", err, derr)
	}
	_ = c.Conn.Close()
	c.mu.Lock()
	c.Conn, c.dropped = fresh, nil
	c.mu.Unlock()
	reply, err = send(c.Conn)
	c.check(cmd, reply, err)
	return reply, err
}

// note follows the transaction state a retry must not cross.
func (c *failoverConn) note(cmd string) {
	switch strings.ToUpper(cmd) {
	case "WATCH", "MULTI":
		c.txn = true
	case "EXEC", "DISCARD", "UNWATCH":
		c.txn = false
	}
}

// check marks the connection dropped when the reply says it reaches the
// wrong server, and reports whether the command is worth sending again on
// a fresh connection (a failover error; not a replica's ROLE reply, which
// is the answer its caller asked for).
func (c *failoverConn) check(cmd string, reply any, err error) (retry bool) {
	var cause error
	switch {
	case IsFailoverError(err):
		cause, retry = err, true
	case err == nil && strings.EqualFold(cmd, "ROLE") && roleOf(reply) == "slave":
		cause = errors.New("ROLE: the server is a replica")
	default:
		return false
	}
	c.mu.Lock()
	c.dropped = errDropped{cause: cause}
	c.mu.Unlock()
	return retry
}

// roleOf is the first element of a ROLE reply: master, slave or sentinel.
func roleOf(reply any) string {
	items, ok := reply.([]any)
	if !ok || len(items) == 0 {
		return ""
	}
	switch r := items[0].(type) {
	case []byte:
		return string(r)
	case string:
		return r
	}
	return ""
}
