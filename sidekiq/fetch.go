package sidekiq

import (
	"context"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

// UnitOfWork is one fetched job: its queue and the exact bytes popped.
type UnitOfWork struct {
	Queue string
	Raw   []byte
}

// Fetcher takes jobs from queues and settles them, as Sidekiq's fetch.rb
// strategies do. Fetch returns nil, nil when nothing came within its wait.
type Fetcher interface {
	Fetch(ctx context.Context) (*UnitOfWork, error)
	// Ack marks a job done (reliable fetch drops it from the in-flight list).
	Ack(ctx context.Context, u *UnitOfWork) error
	// Requeue gives an unfinished job back to the right end of its queue.
	Requeue(ctx context.Context, u *UnitOfWork) error
	// Reliable reports whether jobs survive the process being killed;
	// failure writes then acknowledge in the same transaction.
	Reliable() bool
}

// fetchWait is Sidekiq's BRPOP timeout: a quiet or stop request is noticed
// within it.
const fetchWait = 2 * time.Second

// basicFetch is Sidekiq's BasicFetch: BRPOP, no acknowledgement.
type basicFetch struct {
	pool  *redis.Pool
	order *queueOrder
}

func (f *basicFetch) Fetch(ctx context.Context) (*UnitOfWork, error) {
	c, err := f.pool.GetContext(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	q, raw, err := rdb.FetchBasic(c, f.order.next(), fetchWait)
	if err != nil || raw == nil {
		return nil, err
	}
	return &UnitOfWork{Queue: q, Raw: raw}, nil
}

func (f *basicFetch) Ack(context.Context, *UnitOfWork) error { return nil }

func (f *basicFetch) Requeue(ctx context.Context, u *UnitOfWork) error {
	c, err := f.pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return rdb.Requeue(c, "", u.Queue, u.Raw, false)
}

func (f *basicFetch) Reliable() bool { return false }

// reliableFetch moves each job atomically from its queue onto an in-flight
// list of this process (LMOVE), and removes it from there only when the job
// has ended. If the process dies, any live process moves the list back once
// the dead one's heartbeat has expired (see recoverOrphans).
type reliableFetch struct {
	pool     *redis.Pool
	identity string
	order    *queueOrder
}

func (f *reliableFetch) Fetch(ctx context.Context) (*UnitOfWork, error) {
	c, err := f.pool.GetContext(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	queues := f.order.next()
	i, raw, err := rdb.FetchReliable(c, f.identity, queues)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	if raw != nil {
		return &UnitOfWork{Queue: queues[i], Raw: raw}, nil
	}
	// Everything was empty: block on the first queue of this round. With
	// several queues the wait is short, so a job on another queue waits
	// at most that long.
	wait := fetchWait
	if len(queues) > 1 {
		wait = 500 * time.Millisecond
	}
	raw, err = rdb.BlockingFetchReliable(c, f.identity, queues[0], wait)
	if err != nil || raw == nil {
		return nil, err
	}
	return &UnitOfWork{Queue: queues[0], Raw: raw}, nil
}

func (f *reliableFetch) Ack(ctx context.Context, u *UnitOfWork) error {
	c, err := f.pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return rdb.Ack(c, f.identity, u.Queue, u.Raw)
}

func (f *reliableFetch) Requeue(ctx context.Context, u *UnitOfWork) error {
	c, err := f.pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return rdb.Requeue(c, f.identity, u.Queue, u.Raw, true)
}

func (f *reliableFetch) Reliable() bool { return true }
