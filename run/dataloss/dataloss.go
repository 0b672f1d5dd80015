// Package dataloss tells a person's deletion from Redis losing data. Sidekiq's
// "Delete queue" removes a run's queue and cancels the run; a restart, a
// failover to a replica that missed the last writes, FLUSHALL or an
// eviction under maxmemory makes the same jobs vanish, and must never
// cancel: the run is rebuilt from its stored upload instead. The feeder
// and the supervisor read these signs through Redis with a Reader.
//
// It imports redigo and contract only.
package dataloss

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
)

// Reader reads the signs of data loss on a pool's Redis.
type Reader struct{ pool *redis.Pool }

// New is a Reader on pool.
func New(pool *redis.Pool) Reader { return Reader{pool: pool} }

func (r Reader) conn(ctx context.Context) (redis.Conn, error) {
	c, err := r.pool.GetContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	return c, nil
}

// Epoch names the Redis dataset: the server's run_id and its replication
// id. Both change when what Redis holds may have jumped back in time
// without anyone acting: a restart (run_id), or a failover to a replica
// that had not received the last writes (the promoted replica takes a new
// master_replid). Jobs that vanish across such a change were lost, not
// deleted from the dashboard. evicted is the server's evicted_keys: keys
// Redis dropped under maxmemory vanish the same way, with no epoch change.
func (r Reader) Epoch(ctx context.Context) (epoch string, evicted int64, err error) {
	c, err := r.conn(ctx)
	if err != nil {
		return "", 0, err
	}
	defer c.Close()
	info, err := redis.String(c.Do("INFO", "server"))
	if err != nil {
		return "", 0, fmt.Errorf("redis epoch: %w", err)
	}
	repl, err := redis.String(c.Do("INFO", "replication"))
	if err != nil {
		return "", 0, fmt.Errorf("redis epoch: %w", err)
	}
	evicted, err = evictions(c)
	if err != nil {
		return "", 0, err
	}
	return infoField(info, "run_id") + "/" + infoField(repl, "master_replid"), evicted, nil
}

// Evictions is the server's evicted_keys (0 where INFO stats does not give
// it, as the embedded Redis of the all-in-one server, which never evicts).
func (r Reader) Evictions(ctx context.Context) (int64, error) {
	c, err := r.conn(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return evictions(c)
}

func evictions(c redis.Conn) (int64, error) {
	stats, err := redis.String(c.Do("INFO", "stats"))
	if err != nil {
		return 0, fmt.Errorf("redis evictions: %w", err)
	}
	n, _ := strconv.ParseInt(infoField(stats, "evicted_keys"), 10, 64)
	return n, nil
}

// infoField is one field of an INFO reply ("" when absent: miniredis
// answers few of them, and an unchanged "" never looks like a change).
func infoField(info, name string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// RunKeysSurvive tells whether a run's own split bookkeeping is still in
// Redis: its feeder lease, split progress or total. A queue that vanished
// while they stay was deleted by a person (the dashboard's "Delete queue"
// removes the queue alone); a queue that vanished with them went in a data
// loss.
func (r Reader) RunKeysSurvive(ctx context.Context, token string) (bool, error) {
	c, err := r.conn(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close()
	n, err := redis.Int(c.Do("EXISTS", contract.FeederKey(token), contract.SplitKey(token), contract.TotalKey(token)))
	if err != nil {
		return false, fmt.Errorf("run %s: own keys: %w", token, err)
	}
	return n > 0, nil
}

// Relist puts queue back in Sidekiq's "queues" set, as every push does:
// Redis evicted the set (or the run's queue with it), and a run that has
// pushed its last row would otherwise stay unlisted, which reads as a
// "Delete queue".
func (r Reader) Relist(ctx context.Context, queue string) error {
	c, err := r.conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Do("SADD", "queues", queue); err != nil {
		return fmt.Errorf("list queue %s again: %w", queue, err)
	}
	return nil
}
