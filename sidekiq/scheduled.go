package sidekiq

import (
	"context"
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

// enqueueDue moves every due job of the retry and schedule sets to its
// queue, with a fresh enqueued_at. Each move is atomic and only the process
// whose ZREM wins pushes, so no job is enqueued twice and none is lost
// between removal and push. It returns how many it moved.
func (s *Server) enqueueDue(ctx context.Context) (int, error) {
	moved := 0
	err := s.do(ctx, func(c redis.Conn) error {
		for _, set := range []string{rdb.KeyRetry, rdb.KeySchedule} {
			for ctx.Err() == nil {
				now := s.opts.Now()
				due, err := rdb.Due(c, set, now, 100)
				if err != nil {
					return err
				}
				for _, member := range due {
					ok, err := s.promote(c, set, member, now)
					if err != nil {
						return err
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
		return nil
	})
	return moved, err
}

func (s *Server) promote(c redis.Conn, set string, member []byte, now time.Time) (bool, error) {
	job, err := ParseJob(member)
	if err != nil {
		// Not a job: it cannot run, so it goes to the dead set as it is.
		s.log.Error("bad payload in "+set+": moved to the dead set", "err", err)
		if _, err := c.Do("ZREM", set, member); err != nil {
			return false, err
		}
		return false, rdb.Kill(c, now, s.deadLimits(), member)
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
		job.SetTime("created_at", now, s.opts.Dialect)
	}
	job.SetTime("enqueued_at", now, s.opts.Dialect)
	data, err := job.Encode()
	if err != nil {
		return false, err
	}
	return rdb.Promote(c, set, job.Queue, member, data)
}

func (s *Server) pollLoop(ctx context.Context) {
	// Start after a random part of one interval so processes started
	// together do not poll together.
	wait := time.Duration(rand.Float64() * float64(5*time.Second))
	b := newBackoff()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if !s.quiet.Load() {
			if _, err := s.enqueueDue(ctx); err != nil && ctx.Err() == nil {
				b.fail(s.log, "scheduled poller", err)
			} else {
				b.ok(s.log)
			}
		}
		n := 1
		_ = s.do(ctx, func(c redis.Conn) error {
			var err error
			n, err = rdb.ProcessCount(c)
			return err
		})
		wait = PollInterval(s.opts.PollAverage, n, rand.Float64)
	}
}
