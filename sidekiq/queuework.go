package sidekiq

import (
	"context"
	"fmt"
	"slices"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

// QueueWork is everything Redis holds for one queue: what a supervisor
// needs to tell a queue that is being worked from one whose jobs or
// workers were lost.
type QueueWork struct {
	// Listed says the queue is in the "queues" set. Sidekiq's "Delete
	// queue" removes it from there; pushing adds it back.
	Listed bool
	// Enqueued, Scheduled, Retrying and InFlight are the raw payloads of
	// the queue's jobs in its list, the schedule and retry sets, and the
	// reliable-fetch in-flight lists of every process.
	Enqueued, Scheduled, Retrying, InFlight [][]byte
	// OrphanedInFlight counts in-flight jobs whose process is dead: they go
	// back to the queue once a live reliable-fetch process recovers them.
	OrphanedInFlight int
	// Consumers are the live processes that fetch from the queue and are
	// not quiet.
	Consumers []string
	// Busy counts jobs of the queue that live processes report running in
	// their work hashes (basic fetch shows running jobs only there).
	Busy int
}

// Jobs calls fn for every payload the queue holds, wherever it is.
func (w QueueWork) Jobs(fn func(raw []byte)) {
	for _, l := range [][][]byte{w.Enqueued, w.Scheduled, w.Retrying, w.InFlight} {
		for _, raw := range l {
			fn(raw)
		}
	}
}

// HasWork says the queue holds jobs that a worker must run.
func (w QueueWork) HasWork() bool {
	return len(w.Enqueued)+len(w.Scheduled)+len(w.Retrying)+w.OrphanedInFlight > 0
}

// QueueWork reads everything Redis holds for queue. It reads the whole
// list, so it is meant for queues kept short (a windowed split).
func (a *API) QueueWork(ctx context.Context, queue string) (QueueWork, error) {
	w, err := a.walkQueue(ctx, queue, true)
	if err != nil {
		return QueueWork{}, fmt.Errorf("queue work %s: %w", queue, err)
	}
	return w.QueueWork, nil
}

// queueWalk is one pass over a queue: QueueWork, plus the sizes of the
// queue and in-flight lists, known also when their jobs were not read.
type queueWalk struct {
	QueueWork
	enqueued, inFlight int
}

// walkQueue reads what Redis holds for queue, for QueueWork and PendingFor.
// With payloads it reads the jobs of the queue and in-flight lists; without,
// only their sizes (PendingFor's queue may be long). The sets are scanned
// either way: their members must be parsed to be counted.
func (a *API) walkQueue(ctx context.Context, queue string, payloads bool) (queueWalk, error) {
	var w queueWalk
	err := a.do(ctx, func(c redis.Conn) error {
		var err error
		if w.Listed, err = rdb.Listed(c, queue); err != nil {
			return err
		}
		if payloads {
			w.Enqueued, err = rdb.QueueAll(c, queue)
			w.enqueued = len(w.Enqueued)
		} else {
			w.enqueued, err = rdb.QueueLen(c, queue)
		}
		if err != nil {
			return err
		}
		if w.Scheduled, err = membersInSet(c, rdb.KeySchedule, queue); err != nil {
			return err
		}
		if w.Retrying, err = membersInSet(c, rdb.KeyRetry, queue); err != nil {
			return err
		}
		owners, err := rdb.InflightOwners(c)
		if err != nil {
			return err
		}
		for _, o := range owners {
			if o.Queue != queue {
				continue
			}
			var n int
			if payloads {
				entries, err := rdb.InflightEntries(c, o.Identity, o.Queue)
				if err != nil {
					return err
				}
				w.InFlight = append(w.InFlight, entries...)
				n = len(entries)
			} else if n, err = rdb.InflightLen(c, o.Identity, o.Queue); err != nil {
				return err
			}
			w.inFlight += n
			if n > 0 {
				alive, err := rdb.Alive(c, o.Identity)
				if err != nil {
					return err
				}
				if !alive {
					w.OrphanedInFlight += n
				}
			}
		}
		return nil
	})
	if err != nil {
		return w, err
	}
	ps, err := a.Processes(ctx)
	if err != nil {
		return w, err
	}
	for _, p := range ps {
		if !p.Quiet && slices.Contains(p.Queues, queue) {
			w.Consumers = append(w.Consumers, p.Identity)
		}
	}
	ws, err := a.workersOf(ctx, ps)
	if err != nil {
		return w, err
	}
	for _, x := range ws {
		if x.Queue == queue {
			w.Busy++
		}
	}
	return w, nil
}

// InflightIndexKey is the set of "<identity>|<queue>" pairs whose in-flight
// lists may hold jobs (reliable fetch), for code that must find a job
// wherever it waits, as the Ruby-split row census does.
const InflightIndexKey = rdb.KeyInflightIndex
