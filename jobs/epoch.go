package jobs

import "context"

// noteRedisEpoch forgets which rows waited in each run's queue when the
// Redis dataset changed or Redis evicted keys since the last pass, so rows
// lost in a failover, a restart or an eviction are pushed again
// (repairGaps) instead of being read as a "Delete queue" that cancels the
// run (queueEmptiedByHand). The pass then knows Redis lost data (lostData):
// a queue missing from Sidekiq's "queues" set is listed again, not taken
// for a deletion.
func (p *Pipeline) noteRedisEpoch(ctx context.Context) {
	epoch, evicted, err := p.lost.Epoch(ctx)
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
