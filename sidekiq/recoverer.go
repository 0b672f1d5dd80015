package sidekiq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

// RecoverInterval is how often a server looks for dead processes' jobs.
const RecoverInterval = 15 * time.Second

// recoverer gives back to their queues the in-flight jobs of processes
// whose heartbeat has expired (killed, OOM, lost host) and this process's
// own in-flight entries that no processor holds (reliable fetch only; as
// asynq's recoverer).
type recoverer struct {
	recovererParams
}

type recovererParams struct {
	pool     *redis.Pool
	log      *slog.Logger
	identity string // this process: its lists are never orphans
	// interval is the pause between passes; the first pass runs at start.
	interval time.Duration
	// ownUnheld gives back this process's in-flight entries that no
	// processor holds (a settle that never reached Redis); nil for none.
	ownUnheld func(context.Context) (int, error)
}

func newRecoverer(p recovererParams) *recoverer { return &recoverer{recovererParams: p} }

// run recovers at start and then every interval until ctx is done.
func (r *recoverer) run(ctx context.Context) {
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if _, err := r.runOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("recover in-flight jobs", "err", err)
		}
		wait = r.interval
	}
}

// runOnce gives back dead processes' in-flight jobs, then this process's
// unheld ones; one failing does not skip the other. It returns how many
// jobs went back.
func (r *recoverer) runOnce(ctx context.Context) (int, error) {
	moved, err := r.recoverOrphans(ctx)
	if err != nil {
		err = fmt.Errorf("orphaned jobs: %w", err)
	}
	if r.ownUnheld != nil {
		n, oerr := r.ownUnheld(ctx)
		if n > 0 {
			r.log.Warn("gave back in-flight jobs no processor held", "jobs", n)
		}
		moved += n
		if oerr != nil {
			err = errors.Join(err, fmt.Errorf("own unsettled jobs: %w", oerr))
		}
	}
	return moved, err
}

func (r *recoverer) recoverOrphans(ctx context.Context) (int, error) {
	c, err := r.pool.GetContext(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	owners, err := rdb.InflightOwners(c)
	if err != nil {
		return 0, err
	}
	moved := 0
	for _, o := range owners {
		if o.Identity == r.identity {
			continue
		}
		alive, err := rdb.Alive(c, o.Identity)
		if err != nil {
			return moved, err
		}
		if alive {
			continue
		}
		n, err := rdb.RecoverInflight(c, o)
		if err != nil {
			return moved, err
		}
		if n > 0 {
			r.log.Warn("recovered jobs of a dead process", "dead_identity", o.Identity, "queue", o.Queue, "jobs", n)
		}
		moved += n
	}
	return moved, nil
}
