package sidekiq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

// ClientOptions configures a Client.
type ClientOptions struct {
	Dialect    Dialect            // format of written timestamps; default Dialect8
	Middleware []ClientMiddleware // run on every job before it is pushed
	Now        func() time.Time   // clock; default time.Now
	BatchSize  int                // jobs per pipelined round trip in PushBulk; default 1000 as Sidekiq 7.1+
}

// Client pushes jobs the way Sidekiq's client.rb does, so that Ruby
// Sidekiq, its API and its Web UI see them as their own.
type Client struct {
	pool *redis.Pool
	opts ClientOptions
}

// NewClient returns a client on pool.
func NewClient(pool *redis.Pool, opts ClientOptions) *Client {
	if opts.Dialect == 0 {
		opts.Dialect = Dialect8
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	return &Client{pool: pool, opts: opts}
}

// Dialect is the format this client writes.
func (c *Client) Dialect() Dialect { return c.opts.Dialect }

// NewJID returns a job id as Sidekiq makes them: 12 random bytes in hex.
func NewJID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ValidQueueName reports whether name can be used as a queue: non-empty and
// free of spaces and control characters. (Sidekiq's Web UI only shows
// queues matching [A-Za-z0-9_:.-]+.)
func ValidQueueName(name string) error {
	if name == "" {
		return errors.New("empty queue name")
	}
	if len(name) > 512 {
		return fmt.Errorf("queue name of %d bytes is too long", len(name))
	}
	if strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("queue name %q has spaces or control characters", name)
	}
	return nil
}

// Push enqueues one job (or schedules it when job.At is set) and returns its
// jid. It returns "" and no error when a client middleware skipped it.
func (c *Client) Push(ctx context.Context, job *Job) (string, error) {
	jids, err := c.PushBulk(ctx, []*Job{job})
	if err != nil {
		return "", err
	}
	return jids[0], nil
}

// PushBulk enqueues jobs in pipelined batches of BatchSize, one round trip
// each; the jobs of one call share created_at and enqueued_at, as in
// Sidekiq's push_bulk. The result has one jid per job, "" where middleware
// skipped it. Jobs are pushed in order, so workers fetch them in order.
func (c *Client) PushBulk(ctx context.Context, jobs []*Job) ([]string, error) {
	return c.pushBatches(ctx, jobs, "")
}

// ErrQueueUnlisted is PushListed's answer when its queue is not in
// Sidekiq's "queues" set: none of the batch was pushed.
var ErrQueueUnlisted = errors.New("queue not listed in Sidekiq's queues set")

// PushListed enqueues jobs on queue, as PushBulk, but only while queue is
// listed in "queues", checked in the same step as each batch's push. A
// producer that goes on pushing to a queue (a run's rows) uses it to see a
// dashboard's "Delete queue" that a plain push would hide by listing the
// queue again. Every job must be for queue and not scheduled. On
// ErrQueueUnlisted, jids holds those of the batches pushed before.
func (c *Client) PushListed(ctx context.Context, queue string, jobs []*Job) ([]string, error) {
	return c.pushBatches(ctx, jobs, queue)
}

// pushBatches is PushBulk, or PushListed when listed names the queue.
func (c *Client) pushBatches(ctx context.Context, jobs []*Job, listed string) ([]string, error) {
	now := c.opts.Now()
	jids := make([]string, len(jobs))
	conn, err := c.pool.GetContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("push: redis: %w", err)
	}
	defer func() { conn.Close() }()
	for start := 0; start < len(jobs); start += c.opts.BatchSize {
		end := min(start+c.opts.BatchSize, len(jobs))
		var immediate []rdb.QueuedJob
		var scheduled []rdb.ScheduledJob
		for i := start; i < end; i++ {
			job := jobs[i]
			if err := c.prepare(ctx, job, now); err != nil {
				if errors.Is(err, ErrSkipPush) {
					continue
				}
				return jids[:i:i], err
			}
			if listed != "" && (job.Queue != listed || !job.At.IsZero()) {
				return jids[:start:start], fmt.Errorf("push %s to %s: PushListed takes jobs for %s, now", job.Class, job.Queue, listed)
			}
			data, err := job.Encode()
			if err != nil {
				return jids[:i:i], fmt.Errorf("push %s: encode: %w", job.Class, err)
			}
			if !job.At.IsZero() {
				scheduled = append(scheduled, rdb.ScheduledJob{At: job.At, JSON: data})
			} else {
				immediate = append(immediate, rdb.QueuedJob{Queue: job.Queue, JSON: data})
			}
			jids[i] = job.JID
		}
		if listed != "" {
			if err := c.pushListed(ctx, &conn, listed, immediate); err != nil {
				return jids[:start:start], err
			}
			continue
		}
		err := c.send(ctx, &conn, func(conn redis.Conn) error { return rdb.Push(conn, immediate) })
		if err != nil {
			return nil, fmt.Errorf("push %d jobs: %w", len(immediate), err)
		}
		err = c.send(ctx, &conn, func(conn redis.Conn) error { return rdb.Schedule(conn, scheduled) })
		if err != nil {
			return nil, fmt.Errorf("schedule %d jobs: %w", len(scheduled), err)
		}
	}
	return jids, nil
}

// pushListed pushes one batch of queue's jobs only while queue is listed.
func (c *Client) pushListed(ctx context.Context, conn *redis.Conn, queue string, jobs []rdb.QueuedJob) error {
	data := make([][]byte, len(jobs))
	for i, j := range jobs {
		data[i] = j.JSON
	}
	var ok bool
	err := c.send(ctx, conn, func(conn redis.Conn) error {
		var err error
		ok, err = rdb.PushListed(conn, queue, data)
		return err
	})
	if err != nil {
		return fmt.Errorf("push %d jobs: %w", len(jobs), err)
	}
	if !ok {
		return fmt.Errorf("push to %s: %w", queue, ErrQueueUnlisted)
	}
	return nil
}

// send runs f, and once more on a fresh connection when the first failed
// on the network (Redis restarted, connection killed), as Sidekiq's client
// retries a pipeline once after reconnecting. At worst a job is pushed
// twice, never lost; the jids are the same.
func (c *Client) send(ctx context.Context, conn *redis.Conn, f func(redis.Conn) error) error {
	err := f(*conn)
	if err == nil {
		return nil
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return err // Redis answered: retrying will not help
	}
	(*conn).Close()
	fresh, gerr := c.pool.GetContext(ctx)
	if gerr != nil {
		*conn = fresh
		return errors.Join(err, gerr)
	}
	*conn = fresh
	return f(fresh)
}

// prepare fills the fields Sidekiq's client normalizes and runs middleware.
func (c *Client) prepare(ctx context.Context, job *Job, now time.Time) error {
	if job.Class == "" {
		return errors.New("push: job has no class")
	}
	if job.Queue == "" {
		job.Queue = "default"
	}
	if err := ValidQueueName(job.Queue); err != nil {
		return fmt.Errorf("push %s: %w", job.Class, err)
	}
	if job.JID == "" {
		job.JID = NewJID()
	}
	if job.Retry == nil {
		job.Retry = []byte("true")
	}
	if _, ok := job.Fields["created_at"]; !ok {
		job.SetTime("created_at", now, c.opts.Dialect)
	}
	for _, m := range c.opts.Middleware {
		if err := m(ctx, job); err != nil {
			if errors.Is(err, ErrSkipPush) {
				return err
			}
			return fmt.Errorf("push %s: %w", job.Class, err)
		}
	}
	// Ruby's client refuses the same push: JSON.generate raises
	// JSON::NestingError, and no Sidekiq could parse the payload anyway.
	if job.nesting() > maxNesting {
		return fmt.Errorf("push %s: %w: nested deeper than %d (Ruby's JSON max_nesting)", job.Class, ErrBadArgs, maxNesting)
	}
	if job.At.IsZero() {
		job.SetTime("enqueued_at", now, c.opts.Dialect)
	} else {
		// Scheduled jobs carry no enqueued_at until they are moved to a queue.
		delete(job.Fields, "enqueued_at")
	}
	return nil
}
