package sidekiq

import (
	"context"
	"fmt"
	"log/slog"
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

// fetchWait is Sidekiq's BRPOP timeout: a quiet or stop request is noticed
// within it.
const fetchWait = 2 * time.Second

// fetcher takes jobs from the queues and is the only part that writes what
// became of them: acknowledgement, requeue, retry set, dead set (Sidekiq's
// fetch.rb UnitOfWork together with job_retry.rb's writes).
//
// With reliable fetch (identity set, the default) a job moves atomically
// from its queue onto an in-flight list of this process and leaves it only
// in the transaction that writes its fate; if the process dies, a live one
// moves the list back once the heartbeat has expired (see recoverer). With
// basic fetch (identity "", Sidekiq's BasicFetch) jobs are popped, and a
// job running when the process is killed is lost.
//
// Fetching is batched: one round trip takes a job for every free processor
// and carries the acknowledgements of every job finished since the last
// one (group commit). While a fetch waits on empty queues, the acker writes
// acknowledgements as they come, so a finished job never waits for work to
// arrive before it leaves the in-flight list.
type fetcher struct {
	pool     *redis.Pool
	identity string // owner of the in-flight lists; "" with basic fetch
	order    *queueOrder
	log      *slog.Logger
	dead     rdb.DeadLimits
	gone     <-chan struct{} // closed once the server has exited: settling gives up

	acks ackQueue
	held heldSet

	ackerStop chan struct{}
	ackerDone chan struct{}
}

func newFetcher(pool *redis.Pool, identity string, order *queueOrder, log *slog.Logger, dead rdb.DeadLimits, gone <-chan struct{}) *fetcher {
	return &fetcher{
		pool: pool, identity: identity, order: order, log: log, dead: dead, gone: gone,
		acks: ackQueue{wake: make(chan struct{}, 1)},
		held: heldSet{held: map[*UnitOfWork]struct{}{}},
	}
}

// Reliable reports whether fetched jobs survive the process being killed.
func (f *fetcher) Reliable() bool { return f.identity != "" }

// register records, before the first fetch, that this process may keep
// in-flight lists for its queues, so a live process finds them if this one
// dies (reliable fetch; the heartbeat writes it again on every beat).
func (f *fetcher) register(ctx context.Context) error {
	if !f.Reliable() {
		return nil
	}
	return f.do(ctx, func(c redis.Conn) error { return rdb.RegisterInflight(c, f.identity, f.order.unique) })
}

// recoverer is the part that gives back the jobs of dead processes and our
// own unsettled ones, every interval; nil with basic fetch.
func (f *fetcher) recoverer(interval time.Duration) *recoverer {
	if !f.Reliable() {
		return nil
	}
	return &recoverer{fetch: f, interval: interval, log: f.log}
}

// release ends fetching at shutdown: it writes the pending
// acknowledgements, then gives every job still on this process's in-flight
// lists back to its queue.
func (f *fetcher) release(ctx context.Context) error {
	f.stopAcker()
	if !f.Reliable() {
		return nil
	}
	return f.do(ctx, func(c redis.Conn) error {
		for _, q := range f.order.unique {
			if _, err := rdb.RecoverInflight(c, rdb.Orphan{Identity: f.identity, Queue: q}); err != nil {
				return fmt.Errorf("give back in-flight jobs of %s: %w", q, err)
			}
		}
		return nil
	})
}

// fetch acknowledges the finished jobs and takes up to n jobs in one round
// trip; when every queue is empty it waits up to fetchWait (500 ms with
// several queues, so a job on another queue waits at most that long) for
// one on the first queue of a fresh order (all queues in order with basic
// fetch). nil, nil means nothing came.
func (f *fetcher) fetch(ctx context.Context, n int) ([]*UnitOfWork, error) {
	c, err := f.pool.GetContext(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	orders := make([][]int, n)
	fixed := f.order.mode == Strict || len(f.order.unique) == 1
	for i := range orders {
		if fixed && i > 0 {
			orders[i] = orders[0] // the same for every job
		} else {
			orders[i] = f.order.nextIndexes()
		}
	}
	acked := f.acks.take()
	got, ackedOK, err := rdb.FetchMany(c, f.identity, f.order.unique, orders, acked.jobs())
	if ackedOK {
		f.held.release(acked...)
	} else {
		f.acks.putBack(acked)
	}
	if len(got) > 0 {
		out := make([]*UnitOfWork, len(got))
		for i, g := range got {
			out[i] = &UnitOfWork{Queue: f.order.unique[g.Index], Raw: g.Job}
		}
		f.held.hold(f.Reliable(), out)
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	wait := fetchWait
	if len(f.order.unique) > 1 {
		wait = 500 * time.Millisecond
	}
	queues := f.order.next()
	if f.Reliable() {
		queues = []string{f.order.unique[orders[0][0]]}
	}
	f.acks.setWaiting(true)
	q, raw, err := rdb.BlockingFetch(c, f.identity, queues, wait)
	f.acks.setWaiting(false)
	if err != nil || raw == nil {
		return nil, err
	}
	out := []*UnitOfWork{{Queue: q, Raw: raw}}
	f.held.hold(f.Reliable(), out)
	return out, nil
}

// ack marks a finished job done. With reliable fetch the acknowledgement
// goes with the next fetch round trip, or at once from the acker while the
// fetch waits for work.
func (f *fetcher) ack(u *UnitOfWork) {
	if f.Reliable() {
		f.acks.add(u)
	}
}

// startAcker starts the goroutine that writes acknowledgements while the
// fetch waits; stopAcker stops it and writes what is left.
func (f *fetcher) startAcker() {
	f.ackerStop, f.ackerDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(f.ackerDone)
		stop := f.ackerStop
		for {
			select {
			case <-stop:
				return
			case <-f.acks.wake:
			}
			f.flushAcks(stop)
		}
	}()
}

func (f *fetcher) stopAcker() {
	if f.ackerStop != nil {
		close(f.ackerStop)
		<-f.ackerDone
		f.ackerStop = nil
	}
	f.flushAcks(nil)
}

// flushAcks writes the pending acknowledgements in one pipeline, retrying
// until Redis answers (an unacknowledged job would run again), and only a
// few times once stop is closed or when stop is nil (the server is
// stopping): what is not written then stays in flight and is given back.
func (f *fetcher) flushAcks(stop <-chan struct{}) {
	batch := f.acks.take()
	if len(batch) == 0 {
		return
	}
	delay := 50 * time.Millisecond
	logged := false
	for attempt := 1; ; attempt++ {
		err := f.do(context.Background(), func(c redis.Conn) error { return rdb.AckMany(c, f.identity, batch.jobs()) })
		if err == nil {
			f.held.release(batch...)
			return
		}
		if stopping(stop) && attempt >= 8 {
			if stop != nil {
				f.acks.putBack(batch) // for the final flush
				return
			}
			f.log.Error("ack: jobs stay in flight and go back to their queue", "jobs", len(batch), "err", err)
			return
		}
		if !logged {
			f.log.Error("ack: redis unavailable, retrying until it answers", "jobs", len(batch), "err", err)
			logged = true
		}
		select {
		case <-time.After(delay):
		case <-stop:
		}
		delay = min(2*delay, 2*time.Second)
	}
}

func stopping(stop <-chan struct{}) bool {
	if stop == nil {
		return true
	}
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// requeue gives an unfinished job back to the right end of its queue, so
// it runs next (Sidekiq's hard shutdown and a job fetched after quiet).
func (f *fetcher) requeue(ctx context.Context, u *UnitOfWork) error {
	if err := f.do(ctx, func(c redis.Conn) error {
		return rdb.Requeue(c, f.identity, u.Queue, u.Raw, f.Reliable())
	}); err != nil {
		return err
	}
	f.held.release(u)
	return nil
}

// requeueMany gives back jobs fetched but never started, in fetch order,
// to the right end of their queues (Sidekiq's bulk_requeue), in one
// transaction. If Redis does not answer, reliable fetch still holds them
// in flight: they are released so the recoverer gives them back.
func (f *fetcher) requeueMany(ctx context.Context, us []*UnitOfWork) error {
	err := f.do(ctx, func(c redis.Conn) error {
		return rdb.RequeueMany(c, f.identity, units(us).jobs(), f.Reliable())
	})
	f.held.release(us...)
	return err
}

// retry schedules job (the failed job rewritten) in the retry set at at and
// acknowledges u, in one transaction.
func (f *fetcher) retry(ctx context.Context, u *UnitOfWork, at time.Time, job []byte) {
	f.settle(ctx, u, func(c redis.Conn) error { return rdb.RetryAndAck(c, at, job, f.identity, u.Queue, u.Raw) })
}

// kill adds job to the dead set, trimmed as send_to_morgue does, and
// acknowledges u, in one transaction.
func (f *fetcher) kill(ctx context.Context, u *UnitOfWork, now time.Time, job []byte) {
	f.settle(ctx, u, func(c redis.Conn) error { return rdb.KillAndAck(c, now, f.dead, job, f.identity, u.Queue, u.Raw) })
}

// drop acknowledges a failed job that is kept nowhere (discarded, or retry
// and dead both off), at once rather than with the next fetch.
func (f *fetcher) drop(ctx context.Context, u *UnitOfWork) {
	if !f.Reliable() {
		return
	}
	f.settle(ctx, u, func(c redis.Conn) error { return rdb.Ack(c, f.identity, u.Queue, u.Raw) })
}

// settle writes a failed job's fate and retries until Redis answers: a
// settle dropped during an outage would leave the job parked on the
// in-flight list. It gives up only once the server has exited; the job
// then stays in flight and comes back when recovered.
func (f *fetcher) settle(ctx context.Context, u *UnitOfWork, write func(redis.Conn) error) {
	b := newBackoff()
	for {
		err := f.do(ctx, write)
		if err == nil {
			b.ok(f.log)
			f.held.release(u)
			return
		}
		b.fail(f.log, "settle failed job", err)
		select {
		case <-f.gone:
			f.log.Error("settle failed job: giving up at exit; the job stays in flight", "queue", u.Queue, "err", err)
			return
		case <-time.After(b.delay):
		}
	}
}

// do runs fn on a pooled connection.
func (f *fetcher) do(ctx context.Context, fn func(redis.Conn) error) error {
	c, err := f.pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

// ackQueue holds finished jobs until a fetch round trip (or the acker)
// writes their acknowledgement.
type ackQueue struct {
	mu      sync.Mutex
	pending units
	waiting bool          // a fetch is blocked on empty queues
	wake    chan struct{} // cap 1: the acker has work
}

type units []*UnitOfWork

func (us units) jobs() []rdb.AckedJob {
	if len(us) == 0 {
		return nil
	}
	out := make([]rdb.AckedJob, len(us))
	for i, u := range us {
		out[i] = rdb.AckedJob{Queue: u.Queue, Raw: u.Raw}
	}
	return out
}

func (q *ackQueue) add(u *UnitOfWork) {
	q.mu.Lock()
	q.pending = append(q.pending, u)
	waiting := q.waiting
	q.mu.Unlock()
	if waiting {
		q.poke()
	}
}

func (q *ackQueue) take() units {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.pending
	if len(out) == 0 {
		return nil
	}
	// Sized like the last batch: appending one job at a time from nil
	// would grow the slice several times per batch.
	q.pending = make(units, 0, cap(out))
	return out
}

// putBack returns acknowledgements that were not written, for the next try.
func (q *ackQueue) putBack(us units) {
	if len(us) == 0 {
		return
	}
	q.mu.Lock()
	q.pending = append(q.pending, us...)
	q.mu.Unlock()
}

// setWaiting marks a fetch blocked (or no longer blocked) on empty queues;
// what is pending goes to the acker at once.
func (q *ackQueue) setWaiting(w bool) {
	q.mu.Lock()
	q.waiting = w
	n := len(q.pending)
	q.mu.Unlock()
	if w && n > 0 {
		q.poke()
	}
}

func (q *ackQueue) isWaiting() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiting
}

func (q *ackQueue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// heldSet counts the payloads this process fetched (reliable fetch) and has
// not settled yet; an entry of our own in-flight list that is not held by
// two checks in a row is given back (recoverUnheld): a settle that never
// reached Redis must not leave a job parked until a restart.
type heldSet struct {
	mu      sync.Mutex
	held    map[*UnitOfWork]struct{} // keyed by pointer: no copy of the payload per job
	suspect map[string]int           // unheld entries seen at the previous check
}

func heldKey(queue string, raw []byte) string { return queue + "\x00" + string(raw) }

func (h *heldSet) hold(reliable bool, us []*UnitOfWork) {
	if !reliable {
		return
	}
	h.mu.Lock()
	for _, u := range us {
		h.held[u] = struct{}{}
	}
	h.mu.Unlock()
}

func (h *heldSet) release(us ...*UnitOfWork) {
	h.mu.Lock()
	for _, u := range us {
		delete(h.held, u)
	}
	h.mu.Unlock()
}

// counts is how many held jobs have each payload, by heldKey (the caller
// holds mu).
func (h *heldSet) counts() map[string]int {
	out := make(map[string]int, len(h.held))
	for u := range h.held {
		out[heldKey(u.Queue, u.Raw)]++
	}
	return out
}

// recoverUnheld gives back to their queues the entries of this process's
// own in-flight lists that no processor holds, once they were seen unheld
// at two checks in a row (a fetch in progress is held within moments). It
// returns how many it gave back.
func (f *fetcher) recoverUnheld(ctx context.Context) (int, error) {
	if !f.Reliable() {
		return 0, nil
	}
	c, err := f.pool.GetContext(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	lists := map[string][][]byte{}
	for _, q := range f.order.unique {
		entries, err := rdb.InflightEntries(c, f.identity, q)
		if err != nil {
			return 0, err
		}
		lists[q] = entries
	}
	h := &f.held
	h.mu.Lock()
	held := h.counts()
	unheld := map[string]int{}
	seen := map[string]int{}
	var giveBack []*UnitOfWork
	for q, entries := range lists {
		for _, raw := range entries {
			k := heldKey(q, raw)
			seen[k]++
			if seen[k] <= held[k] {
				continue
			}
			unheld[k]++
			if unheld[k] <= h.suspect[k] {
				giveBack = append(giveBack, &UnitOfWork{Queue: q, Raw: raw})
			}
		}
	}
	h.suspect = unheld
	h.mu.Unlock()
	for _, u := range giveBack {
		if err := rdb.Requeue(c, f.identity, u.Queue, u.Raw, true); err != nil {
			return 0, err
		}
	}
	return len(giveBack), nil
}
