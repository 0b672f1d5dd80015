package sidekiq

import (
	"context"
	"fmt"
	"sync"
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
//
// It fetches as many jobs as there are idle processors in one script call,
// and acknowledges finished jobs in pipelined batches, so a busy worker
// pays far less than two round trips per job.
type reliableFetch struct {
	pool     *redis.Pool
	identity string
	order    *queueOrder
	log      interface{ Error(string, ...any) }

	mu      sync.RWMutex
	closed  bool
	acks    chan *UnitOfWork
	ackDone chan struct{}
}

func newReliableFetch(pool *redis.Pool, identity string, order *queueOrder, log interface{ Error(string, ...any) }) *reliableFetch {
	return &reliableFetch{pool: pool, identity: identity, order: order, log: log}
}

// Fetch takes one job (the Fetcher interface).
func (f *reliableFetch) Fetch(ctx context.Context) (*UnitOfWork, error) {
	us, err := f.FetchMany(ctx, 1)
	if err != nil || len(us) == 0 {
		return nil, err
	}
	return us[0], nil
}

// FetchMany takes up to n jobs in one round trip; when every queue is
// empty it waits for one on the first queue of a fresh order.
func (f *reliableFetch) FetchMany(ctx context.Context, n int) ([]*UnitOfWork, error) {
	c, err := f.pool.GetContext(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	orders := make([][]int, n)
	for i := range orders {
		orders[i] = f.order.nextIndexes()
	}
	got, err := rdb.FetchReliableMany(c, f.identity, f.order.unique, orders)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	if len(got) > 0 {
		out := make([]*UnitOfWork, len(got))
		for i, g := range got {
			out[i] = &UnitOfWork{Queue: f.order.unique[g.Index], Raw: g.Job}
		}
		return out, nil
	}
	// Everything was empty: block on the first queue of this round. With
	// several queues the wait is short, so a job on another queue waits
	// at most that long.
	wait := fetchWait
	if len(f.order.unique) > 1 {
		wait = 500 * time.Millisecond
	}
	q := f.order.unique[orders[0][0]]
	raw, err := rdb.BlockingFetchReliable(c, f.identity, q, wait)
	if err != nil || raw == nil {
		return nil, err
	}
	return []*UnitOfWork{{Queue: q, Raw: raw}}, nil
}

// startAcker starts the goroutine that acknowledges finished jobs in
// batches; closeAcker flushes it and waits.
func (f *reliableFetch) startAcker(buffer int) {
	f.acks = make(chan *UnitOfWork, buffer)
	f.ackDone = make(chan struct{})
	go func() {
		defer close(f.ackDone)
		batch := make([]rdb.AckedJob, 0, 256)
		for u := range f.acks {
			batch = append(batch[:0], rdb.AckedJob{Queue: u.Queue, Raw: u.Raw})
		more:
			for len(batch) < cap(batch) {
				select {
				case u, ok := <-f.acks:
					if !ok {
						break more
					}
					batch = append(batch, rdb.AckedJob{Queue: u.Queue, Raw: u.Raw})
				default:
					break more
				}
			}
			f.ackBatch(batch)
		}
	}()
}

// ackBatch retries a failed batch a few times: an unacknowledged job
// would run again after a restart.
func (f *reliableFetch) ackBatch(batch []rdb.AckedJob) {
	delay := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := func() error {
			c, err := f.pool.Get(), error(nil)
			defer c.Close()
			if err = c.Err(); err != nil {
				return err
			}
			return rdb.AckMany(c, f.identity, batch)
		}()
		if err == nil {
			return
		}
		if attempt == 8 {
			f.log.Error("ack: jobs stay in flight and may run again after a restart", "jobs", len(batch), "err", err)
			return
		}
		time.Sleep(delay)
		delay = min(2*delay, 2*time.Second)
	}
}

func (f *reliableFetch) closeAcker() {
	f.mu.Lock()
	if f.closed || f.acks == nil {
		f.mu.Unlock()
		return
	}
	f.closed = true
	close(f.acks)
	f.mu.Unlock()
	<-f.ackDone
}

// Ack queues a finished job for the batched acknowledgement (or acks it
// at once when no acker runs).
func (f *reliableFetch) Ack(ctx context.Context, u *UnitOfWork) error {
	f.mu.RLock()
	if f.acks != nil && !f.closed {
		f.acks <- u
		f.mu.RUnlock()
		return nil
	}
	f.mu.RUnlock()
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
