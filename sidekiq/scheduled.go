package sidekiq

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

// PollInterval is Sidekiq's scheduled.rb random poll interval: the average
// is the configured one, or 5 s times the number of processes so that the
// whole cluster polls about every 5 s; fewer than 10 processes sleep
// uniformly in [avg/2, 1.5·avg], more in [0, 2·avg] (8.0.10+).
func PollInterval(configured time.Duration, processes int, r func() float64) time.Duration {
	avg := configured
	if avg <= 0 {
		avg = time.Duration(max(processes, 1)) * 5 * time.Second
	}
	if processes < 10 {
		return avg/2 + time.Duration(r()*float64(avg))
	}
	return time.Duration(r() * float64(2*avg))
}

// poller is Sidekiq's scheduled poller (scheduled.rb Poller and Enq): it
// moves due jobs of the retry and schedule sets onto their queues.
type poller struct {
	pollerParams
}

type pollerParams struct {
	pool *redis.Pool
	log  *slog.Logger
	// average is Options.PollAverage; 0 scales it by the process count.
	average time.Duration
	dialect Dialect
	now     func() time.Time
	dead    rdb.DeadLimits // for entries that are not jobs
	quiet   func() bool    // a quiet process stops scheduling, as Sidekiq's
	rand    func() float64 // in [0, 1): the random sleeps
}

func newPoller(p pollerParams) *poller {
	if p.rand == nil {
		p.rand = rand.Float64
	}
	return &poller{pollerParams: p}
}

func (p *poller) processCount(ctx context.Context) int {
	c, err := p.pool.GetContext(ctx)
	if err != nil {
		return 1
	}
	defer c.Close()
	n, err := rdb.ProcessCount(c)
	if err != nil {
		return 1
	}
	return n
}

// runOnce moves every due job of the retry and schedule sets to its queue,
// with a fresh enqueued_at. Each move is atomic and only the process whose
// ZREM wins pushes, so no job is enqueued twice and none is lost between
// removal and push. It returns how many it moved.
func (p *poller) runOnce(ctx context.Context) (int, error) {
	c, err := p.pool.GetContext(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	moved := 0
	for _, set := range []string{rdb.KeyRetry, rdb.KeySchedule} {
		for ctx.Err() == nil {
			now := p.now()
			due, err := rdb.Due(c, set, now, 100)
			if err != nil {
				return moved, err
			}
			for _, member := range due {
				ok, err := p.promote(c, set, member, now)
				if err != nil {
					return moved, err
				}
				if ok {
					moved++
				}
			}
			if len(due) < 100 {
				break
			}
		}
	}
	return moved, nil
}

func (p *poller) promote(c redis.Conn, set string, member []byte, now time.Time) (bool, error) {
	job, err := ParseJob(member)
	if err != nil {
		// Not a job: it cannot run, so it goes to the dead set as it is,
		// in one step (only the poller whose ZREM wins moves it).
		p.log.Error("bad payload in "+set+": moved to the dead set", "err", err)
		_, err := rdb.MoveToDead(c, set, member, now, p.dead)
		return false, err
	}
	// Ruby's poller pushes through Sidekiq::Client (scheduled.rb), whose
	// normalize_item fills a missing queue, jid and created_at before
	// atomic_push sets enqueued_at.
	if job.Queue == "" {
		job.Queue = "default"
	}
	if job.JID == "" {
		job.JID = NewJID()
	}
	if _, ok := job.Fields["created_at"]; !ok {
		job.SetTime("created_at", now, p.dialect)
	}
	job.SetTime("enqueued_at", now, p.dialect)
	data, err := job.Encode()
	if err != nil {
		return false, err
	}
	return rdb.Promote(c, set, job.Queue, member, data)
}

// run polls at random intervals until ctx is done.
func (p *poller) run(ctx context.Context) {
	// Start after a random part of one interval so processes started
	// together do not poll together.
	wait := time.Duration(p.rand() * float64(5*time.Second))
	b := newBackoff()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if !p.quiet() {
			if _, err := p.runOnce(ctx); err != nil && ctx.Err() == nil {
				b.fail(p.log, "scheduled poller", err)
			} else {
				b.ok(p.log)
			}
		}
		wait = PollInterval(p.average, p.processCount(ctx), p.rand)
	}
}
