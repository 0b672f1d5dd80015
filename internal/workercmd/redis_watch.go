package workercmd

import (
	"context"
	"log/slog"
	"time"

	"github.com/gomodule/redigo/redis"
)

// redisWatch stops a worker that has not reached Redis for longer than its
// idle timeout. A worker with no Redis has no work it can take or finish,
// and the Sidekiq server's own idle check never fires while Redis does not
// answer (it cannot tell that the queues are empty): a token worker would
// otherwise live on for ever, and on ECS be billed for it.
type redisWatch struct {
	pool  *redis.Pool
	limit time.Duration // unreachable this long: stop
	every time.Duration // how often to PING
	now   func() time.Time
	log   *slog.Logger
}

func newRedisWatch(pool *redis.Pool, limit time.Duration, log *slog.Logger) *redisWatch {
	return &redisWatch{pool: pool, limit: limit, every: min(max(limit/5, 100*time.Millisecond), 5*time.Second), now: time.Now, log: log}
}

// run PINGs Redis until ctx ends, and calls stop (then returns) once no
// PING has succeeded for longer than the limit.
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
	_, err = redis.DoContext(c, ctx, "PING")
	return err
}
