package jobs

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/gomodule/redigo/redis"
)

// redisEpoch names the Redis dataset the supervisor reads: the server's
// run_id and its replication id. Both change when what Redis holds may
// have jumped back in time without anyone acting: a restart (run_id), or
// a failover to a replica that had not received the last writes (the
// promoted replica takes a new master_replid). Jobs that vanish across
// such a change were lost, not deleted from the dashboard. evicted is the
// server's evicted_keys: keys Redis dropped under maxmemory (an allkeys-*
// or volatile-* policy) vanish the same way, with no epoch change.
func (p *Pipeline) redisEpoch(ctx context.Context) (epoch string, evicted int64, err error) {
	c, err := p.d.Pool.GetContext(ctx)
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
	evicted, err = redisEvictions(c)
	if err != nil {
		return "", 0, err
	}
	return infoField(info, "run_id") + "/" + infoField(repl, "master_replid"), evicted, nil
}

// redisEvictions is the server's evicted_keys (0 where INFO stats does not
// give it, as the embedded Redis of the all-in-one server, which never
// evicts).
func redisEvictions(c redis.Conn) (int64, error) {
	stats, err := redis.String(c.Do("INFO", "stats"))
	if err != nil {
		return 0, fmt.Errorf("redis evictions: %w", err)
	}
	n, _ := strconv.ParseInt(infoField(stats, "evicted_keys"), 10, 64)
	return n, nil
}

// evictions is redisEvictions on a connection of the pool.
func (p *Pipeline) evictions(ctx context.Context) (int64, error) {
	c, err := p.d.Pool.GetContext(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return redisEvictions(c)
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

// noteRedisEpoch forgets which rows waited in each run's queue when the
// Redis dataset changed or Redis evicted keys since the last pass, so rows
// lost in a failover, a restart or an eviction are pushed again
// (repairGaps) instead of being read as a "Delete queue" that cancels the
// run (queueEmptiedByHand). The pass then knows Redis lost data (lostData):
// a queue missing from Sidekiq's "queues" set is listed again, not taken
// for a deletion.
func (p *Pipeline) noteRedisEpoch(ctx context.Context) {
	epoch, evicted, err := p.redisEpoch(ctx)
	if err != nil {
		p.log.Warn("run supervisor: Redis epoch", "err", err)
		return
	}
	s := &p.super
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := s.epoch != "" && epoch != s.epoch
	evictedNow := s.epoch != "" && evicted > s.evicted
	s.lostData = changed || evictedNow
	if s.lostData {
		for _, w := range s.runs {
			w.queued = nil
		}
	}
	switch {
	case changed:
		p.log.Warn("run supervisor: Redis restarted or failed over since the last pass: jobs missing now are taken as lost, not deleted", "was", s.epoch, "now", epoch)
	case evictedNow:
		p.log.Warn("run supervisor: Redis evicted keys since the last pass (maxmemory): jobs and queues missing now are taken as lost, not deleted", "evicted", evicted-s.evicted)
	}
	s.epoch, s.evicted = epoch, evicted
}

// lostDataThisPass reports whether this pass found Redis lost data since
// the last one (noteRedisEpoch).
func (s *supervisor) lostDataThisPass() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lostData
}

// relistQueue puts queue back in Sidekiq's "queues" set, as every push does:
// Redis evicted the set (or the run's queue with it), and a run that has
// pushed its last row would otherwise stay unlisted, which reads as a
// "Delete queue".
func (p *Pipeline) relistQueue(ctx context.Context, queue string) error {
	c, err := p.d.Pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Do("SADD", "queues", queue); err != nil {
		return fmt.Errorf("list queue %s again: %w", queue, err)
	}
	return nil
}
