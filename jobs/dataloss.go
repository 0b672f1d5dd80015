package jobs

import (
	"context"
	"fmt"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
)

// runKeysSurvive tells whether a run's own split bookkeeping is still in
// Redis: its feeder lease, split progress or total. A queue that vanished
// while they stay was deleted by a person (the dashboard's "Delete queue"
// removes the queue alone), which cancels the run; a queue that vanished
// with them went in a data loss (FLUSHALL, FLUSHDB, eviction, a replica
// promoted empty), which must never cancel: the run is rebuilt from the
// stored upload instead.
func (p *Pipeline) runKeysSurvive(ctx context.Context, token string) (bool, error) {
	c, err := p.d.Pool.GetContext(ctx)
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
