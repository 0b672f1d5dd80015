package sidekiq

import (
	"context"
	"log/slog"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

// RecoverInterval is how often a server looks for dead processes' jobs.
const RecoverInterval = 15 * time.Second

// recoverer is reliable fetch's janitor: it gives back the in-flight jobs
// of processes whose heartbeat has expired (killed, OOM, lost host), and
// this process's own in-flight entries that no processor holds (a settle
// that never reached Redis).
type recoverer struct {
	fetch    *fetcher
	interval time.Duration
	log      *slog.Logger
	// deadHere, when set (Options.PrivateRedis), tells a process of this
	// host that is gone although its heartbeat has not expired yet.
	deadHere func(identity string) bool
}

// run recovers at once, then every interval, until ctx is done.
func (r *recoverer) run(ctx context.Context) {
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		r.runOnce(ctx)
		wait = r.interval
	}
}

// runOnce is one pass of both recoveries.
func (r *recoverer) runOnce(ctx context.Context) {
	if _, err := r.recoverOrphans(ctx); err != nil && ctx.Err() == nil {
		r.log.Error("recover orphaned jobs", "err", err)
	}
	n, err := r.fetch.recoverUnheld(ctx)
	if err != nil && ctx.Err() == nil {
		r.log.Error("recover own unsettled jobs", "err", err)
	}
	if n > 0 {
		r.log.Warn("gave back in-flight jobs no processor held", "jobs", n)
	}
}

// recoverOrphans gives back the in-flight jobs of processes whose heartbeat
// has expired. It returns how many jobs it moved.
func (r *recoverer) recoverOrphans(ctx context.Context) (int, error) {
	c, err := r.fetch.pool.GetContext(ctx)
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
		if o.Identity == r.fetch.identity {
			continue
		}
		alive, err := rdb.Alive(c, o.Identity)
		if err != nil {
			return moved, err
		}
		if alive {
			if r.deadHere == nil || !r.deadHere(o.Identity) {
				continue
			}
			// Gone from this host (killed, or the previous run of this
			// server): take it off the Web UI's process list too.
			if err := r.clearGone(c, o.Identity); err != nil {
				return moved, err
			}
			r.log.Warn("a process of this host is gone: its jobs come back before its heartbeat expires", "dead_identity", o.Identity)
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

// clearGone takes a gone process of this host off the process list; for a
// capsule, its liveness key, and its process entry if that is gone too (a
// capsule stopped from a live entry leaves the entry alone).
func (r *recoverer) clearGone(c redis.Conn, identity string) error {
	proc, err := rdb.CapsuleProcess(c, identity)
	if err != nil {
		return err
	}
	if proc == "" {
		return rdb.ClearProcess(c, identity)
	}
	if err := rdb.ClearCapsule(c, identity); err != nil {
		return err
	}
	if r.deadHere(proc) {
		return rdb.ClearProcess(c, proc)
	}
	return nil
}
