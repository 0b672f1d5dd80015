package jobs

import (
	"context"
	"fmt"
	"strings"

	"github.com/gomodule/redigo/redis"
)

// redisEpoch names the Redis dataset the supervisor reads: the server's
// run_id and its replication id. Both change when what Redis holds may
// have jumped back in time without anyone acting: a restart (run_id), or
// a failover to a replica that had not received the last writes (the
// promoted replica takes a new master_replid). Jobs that vanish across
// such a change were lost, not deleted from the dashboard.
func (p *Pipeline) redisEpoch(ctx context.Context) (string, error) {
	c, err := p.d.Pool.GetContext(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	info, err := redis.String(c.Do("INFO", "server"))
	if err != nil {
		return "", fmt.Errorf("redis epoch: %w", err)
	}
	repl, err := redis.String(c.Do("INFO", "replication"))
	if err != nil {
		return "", fmt.Errorf("redis epoch: %w", err)
	}
	return infoField(info, "run_id") + "/" + infoField(repl, "master_replid"), nil
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
// Redis dataset changed since the last pass, so rows lost in a failover or
// a restart are pushed again (repairGaps) instead of being read as a
// "Delete queue" that cancels the run (queueEmptiedByHand).
func (p *Pipeline) noteRedisEpoch(ctx context.Context) {
	epoch, err := p.redisEpoch(ctx)
	if err != nil {
		p.log.Warn("run supervisor: Redis epoch", "err", err)
		return
	}
	s := &p.super
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch != "" && epoch != s.epoch {
		for _, w := range s.runs {
			w.queued = nil
		}
		p.log.Warn("run supervisor: Redis restarted or failed over since the last pass: jobs missing now are taken as lost, not deleted", "was", s.epoch, "now", epoch)
	}
	s.epoch = epoch
}
