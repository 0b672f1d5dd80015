package workercmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// redisWatch stops a worker that has not reached a Redis master for longer
// than its idle timeout. A worker with no Redis has no work it can take or
// finish, and the Sidekiq server's own idle check never fires while Redis
// does not answer (it cannot tell that the queues are empty): a token
// worker would otherwise live on for ever, and on ECS be billed for it.
// It probes with ROLE, not PING: a primary demoted to replica in a
// failover still answers PING but refuses every write, so "slave" counts
// as unreachable (and the pool drops that connection, see
// sidekiq/failover.go, so the next probe dials afresh).
type redisWatch struct {
	pool  *redis.Pool
	limit time.Duration // unreachable this long: stop
	every time.Duration // how often to probe
	now   func() time.Time
	log   *slog.Logger
}

func newRedisWatch(pool *redis.Pool, limit time.Duration, log *slog.Logger) *redisWatch {
	return &redisWatch{pool: pool, limit: limit, every: min(max(limit/5, 100*time.Millisecond), 5*time.Second), now: time.Now, log: log}
}

// run probes Redis until ctx ends, and calls stop (then returns) once no
// probe has found a master for longer than the limit.
func (w *redisWatch) run(ctx context.Context, stop func()) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	lastOK := w.now()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := w.ping(ctx)
		switch {
		case err == nil:
			if failing {
				w.log.Info("Redis reachable again", "after", w.now().Sub(lastOK).Round(time.Millisecond))
			}
			lastOK, failing = w.now(), false
		case ctx.Err() != nil:
			return
		default:
			if !failing {
				w.log.Warn("Redis unreachable", "err", err, "exit_after", w.limit)
				failing = true
			}
			if down := w.now().Sub(lastOK); down > w.limit {
				w.log.Error("Redis unreachable for longer than the idle timeout: stopping", "down", down.Round(time.Millisecond), "idle_timeout", w.limit, "err", err)
				stop()
				return
			}
		}
	}
}

func (w *redisWatch) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(w.every, time.Second))
	defer cancel()
	c, err := w.pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	role, err := redis.Values(redis.DoContext(c, ctx, "ROLE"))
	var re redis.Error
	if errors.As(err, &re) && strings.HasPrefix(string(re), "NOPERM") {
		// An ACL user without ROLE: PING is all it can tell.
		_, err = redis.DoContext(c, ctx, "PING")
		return err
	}
	if err != nil {
		return err
	}
	if len(role) > 0 {
		if r, _ := redis.String(role[0], nil); r != "master" {
			return fmt.Errorf("Redis is a %s, not the master (a failover demoted it?)", r)
		}
	}
	return nil
}
