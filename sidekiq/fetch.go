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

	// held counts the payloads this process fetched and has not settled
	// yet; an entry of our own in-flight list that is not held by two
	// checks in a row is given back (recoverUnheld): a settle that never
	// reached Redis must not leave a job parked until a restart.
	heldMu  sync.Mutex
	held    map[string]int
	suspect map[string]int // unheld entries seen at the previous check
}

func newReliableFetch(pool *redis.Pool, identity string, order *queueOrder, log interface{ Error(string, ...any) }) *reliableFetch {
	return &reliableFetch{pool: pool, identity: identity, order: order, log: log, held: map[string]int{}}
}

// hold and release track fetched payloads until they are settled.
func (f *reliableFetch) hold(us []*UnitOfWork) {
	f.heldMu.Lock()
	for _, u := range us {
		f.held[heldKey(u.Queue, u.Raw)]++
	}
	f.heldMu.Unlock()
}

func (f *reliableFetch) release(queue string, raw []byte) {
	k := heldKey(queue, raw)
	f.heldMu.Lock()
	if f.held[k] <= 1 {
		delete(f.held, k)
	} else {
		f.held[k]--
	}
	f.heldMu.Unlock()
}

func heldKey(queue string, raw []byte) string { return queue + "\x00" + string(raw) }

// recoverUnheld gives back to their queues the entries of this process's
// own in-flight lists that no processor holds, once they were seen unheld
// at two checks in a row (a fetch in progress is held within moments). It
// returns how many it gave back.
func (f *reliableFetch) recoverUnheld(ctx context.Context) (int, error) {
	c, err := f.pool.GetContext(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	unheld := map[string]int{}
	lists := map[string][][]byte{}
	for _, q := range f.order.unique {
		entries, err := rdb.InflightEntries(c, f.identity, q)
		if err != nil {
			return 0, err
		}
		lists[q] = entries
	}
	f.heldMu.Lock()
	seen := map[string]int{}
	var giveBack []*UnitOfWork
	for q, entries := range lists {
		for _, raw := range entries {
			k := heldKey(q, raw)
			seen[k]++
			if seen[k] <= f.held[k] {
				continue
			}
			unheld[k]++
			if unheld[k] <= f.suspect[k] {
				giveBack = append(giveBack, &UnitOfWork{Queue: q, Raw: raw})
			}
		}
	}
	f.suspect = unheld
	f.heldMu.Unlock()
	for _, u := range giveBack {
		if err := rdb.Requeue(c, f.identity, u.Queue, u.Raw, true); err != nil {
			return 0, err
		}
	}
	return len(giveBack), nil
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
		f.hold(out)
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
	out := []*UnitOfWork{{Queue: q, Raw: raw}}
	f.hold(out)
	return out, nil
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

// ackBatch retries a failed batch until Redis answers (an unacknowledged
// job would run again), and only a few times once the server is stopping.
func (f *reliableFetch) ackBatch(batch []rdb.AckedJob) {
	delay := 50 * time.Millisecond
	logged := false
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
			for _, a := range batch {
				f.release(a.Queue, a.Raw)
			}
			return
		}
		f.mu.RLock()
		closing := f.closed
		f.mu.RUnlock()
		if closing && attempt >= 8 {
			f.log.Error("ack: jobs stay in flight and run again once recovered", "jobs", len(batch), "err", err)
			return
		}
		if !logged {
			f.log.Error("ack: redis unavailable, retrying until it answers", "jobs", len(batch), "err", err)
			logged = true
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
	if err := rdb.Ack(c, f.identity, u.Queue, u.Raw); err != nil {
		return err
	}
	f.release(u.Queue, u.Raw)
	return nil
}

func (f *reliableFetch) Requeue(ctx context.Context, u *UnitOfWork) error {
	c, err := f.pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := rdb.Requeue(c, f.identity, u.Queue, u.Raw, true); err != nil {
		return err
	}
	f.release(u.Queue, u.Raw)
	return nil
}

func (f *reliableFetch) Reliable() bool { return true }
