// Package lease is a claim on a Redis key that one process at a time
// holds: the feeder of a run (one per run across processes) and the run
// supervisor (one for the cluster) each take one, renew it while they
// work and give it back when they stop. A holder that dies loses its claim
// when the key expires, so another process takes over.
//
// It imports redigo only: the keys come from the caller (contract).
package lease

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Holder claims leases in the name of one owner (a process).
type Holder struct {
	pool  *redis.Pool
	owner string
}

// New is a holder for owner, unique to the process (a UUID).
func New(pool *redis.Pool, owner string) *Holder { return &Holder{pool: pool, owner: owner} }

// Owner is the value the holder's claims carry.
func (h *Holder) Owner() string { return h.owner }

// Take claims key for ttl if nobody holds it. It reports whether this
// holder now has it.
func (h *Holder) Take(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	c, err := h.pool.GetContext(ctx)
	if err != nil {
		return false, fmt.Errorf("lease %s: %w", key, err)
	}
	defer c.Close()
	r, err := redis.String(c.Do("SET", key, h.owner, "NX", "PX", ttl.Milliseconds()))
	if errors.Is(err, redis.ErrNil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lease %s: take: %w", key, err)
	}
	return r == "OK", nil
}

// renewScript extends a lease only for its owner.
// KEYS: lease key; ARGV: owner, ttl ms. Returns 1 if renewed, else 0.
var renewScript = redis.NewScript(1, `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)

// Renew extends this holder's claim on key to ttl from now. False: the
// claim lapsed or another holder has it.
func (h *Holder) Renew(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	c, err := h.pool.GetContext(ctx)
	if err != nil {
		return false, fmt.Errorf("lease %s: %w", key, err)
	}
	defer c.Close()
	n, err := redis.Int(renewScript.Do(c, key, h.owner, ttl.Milliseconds()))
	if err != nil {
		return false, fmt.Errorf("lease %s: renew: %w", key, err)
	}
	return n == 1, nil
}

// Hold renews the claim on key, or takes it if nobody holds it: one call
// per pass of a loop that must run in one process only.
func (h *Holder) Hold(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	ok, err := h.Renew(ctx, key, ttl)
	if err != nil || ok {
		return ok, err
	}
	return h.Take(ctx, key, ttl)
}

// releaseScript deletes a lease only for its owner.
// KEYS: lease key; ARGV: owner. Returns 1 if deleted, else 0.
var releaseScript = redis.NewScript(1, `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// Release gives up this holder's claim on key, so another process need
// not wait for it to expire; another holder's claim is left alone.
func (h *Holder) Release(ctx context.Context, key string) error {
	c, err := h.pool.GetContext(ctx)
	if err != nil {
		return fmt.Errorf("lease %s: %w", key, err)
	}
	defer c.Close()
	if _, err := releaseScript.Do(c, key, h.owner); err != nil {
		return fmt.Errorf("lease %s: release: %w", key, err)
	}
	return nil
}
