package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/csvrows"
	"github.com/pallarel/pallarel/ledger"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/sidekiq"
)

// DefaultSplitWindow is how many row jobs of one run wait in Redis at most
// (queued, running or retrying); the feeder pushes more as rows end.
const DefaultSplitWindow = 4000

// feedLease is how long a feeder's claim on a run lasts without renewal:
// another process takes over a run whose feeder died after this long.
const feedLease = 15 * time.Second

// feeders runs at most one feeder goroutine per run in this process; the
// lease in Redis keeps it to one across processes.
type feeders struct {
	mu      sync.Mutex
	running map[string]bool
	closed  bool // Close has begun: no feeder starts
	wg      sync.WaitGroup
}

// ensureFeeding starts feeding token's rows unless this process already
// does. It returns at once; the feeder runs until the split has pushed
// every row, the run ended, or another process holds the lease. Its
// context carries from's values (the split job's trace span, so the rows
// it pushes stay in the job's trace) but ends with the pipeline, not with
// from.
func (p *Pipeline) ensureFeeding(from context.Context, token string) {
	f := &p.feeds
	f.mu.Lock()
	if f.running == nil {
		f.running = map[string]bool{}
	}
	if f.running[token] || f.closed {
		f.mu.Unlock()
		return
	}
	f.running[token] = true
	f.wg.Add(1)
	f.mu.Unlock()
	go func() {
		defer f.wg.Done()
		defer func() {
			f.mu.Lock()
			delete(f.running, token)
			f.mu.Unlock()
		}()
		ctx, cancel := context.WithCancel(context.WithoutCancel(from))
		defer cancel()
		defer context.AfterFunc(p.base, cancel)()
		if err := p.feed(ctx, token); err != nil && p.base.Err() == nil {
			p.log.Warn("split feeder stopped; the run supervisor resumes it", "token", token, "err", err)
		}
	}()
}

// stop keeps new feeders from starting and waits for the running ones,
// whose context the caller has cancelled.
func (f *feeders) stop() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.wg.Wait()
}

// errShortReply is a Redis reply without the values asked for.
var errShortReply = errors.New("unexpected Redis reply")

// errLeaseLost stops a feeder whose lease another process took.
var errLeaseLost = errors.New("feeder lease lost")

// errRedisLost stops a feeder whose queue vanished with the run's own keys
// (dataloss.Reader.RunKeysSurvive): the supervisor starts the split again.
var errRedisLost = errors.New("the run's queue and keys vanished: Redis lost data")

// feed pushes a run's rows in a window: at most SplitWindow of them wait in
// Redis, more are pushed as rows end. Rows already recorded in the ledger
// are skipped, so feeding again after a crash, or after Redis lost its
// data, pushes exactly the rows that still have to run. When the last row
// is pushed it records the total and pushes the finalizer.
func (p *Pipeline) feed(ctx context.Context, token string) error {
	ok, err := p.leases.Take(ctx, contract.FeederKey(token), feedLease)
	if err != nil || !ok {
		return err
	}
	defer func() {
		p.warnIf(p.leases.Release(context.WithoutCancel(ctx), contract.FeederKey(token)), "release the feeder lease")
	}()
	p.track(ctx, token)

	st, err := p.d.DB.StatusByToken(ctx, token)
	if err != nil {
		return err
	}
	if st.Ended() {
		return nil
	}
	spec, ok := parseSpec(st.SourceSpec)
	if !ok {
		return fmt.Errorf("feed %s: no source spec recorded", token)
	}
	queue, err := p.tokenQueue(token)
	if err != nil {
		return err
	}
	log := p.log.With("token", token, "queue", queue, "report_id", spec.ReportID)
	pushed, err := p.ledger.SplitProgress(ctx, token)
	if err != nil {
		return err
	}
	recorded, err := p.ledger.Count(ctx, token)
	if err != nil {
		return err
	}
	if pushed == 0 && recorded == 0 && st.DoneCount+st.FailedCount > 0 {
		// The database saw rows end that Redis no longer knows: Redis lost
		// its data. The counts start again with the rows that run again.
		log.Warn("rebuilding the run from storage: Redis lost its jobs and row results",
			"done_count", st.DoneCount, "failed_count", st.FailedCount)
		if err := p.d.DB.SetCounts(ctx, token, 0, 0); err != nil {
			return err
		}
	}

	rc, err := p.d.Store.Open(ctx, spec.SourceKey)
	if err != nil {
		return fmt.Errorf("feed %s: open %s: %w", token, spec.SourceKey, err)
	}
	defer rc.Close()
	var size int64
	if info, err := p.d.Store.Stat(ctx, spec.SourceKey); err == nil {
		size = info.Size
	}
	counted := &countingReader{r: rc}
	rows, err := csvrows.NewReader(counted, csvrows.Options{Encoding: spec.Encoding})
	if err != nil {
		return fmt.Errorf("feed %s: %w", token, err)
	}
	path := contract.ReportDir(token)
	source := newRowSource(spec.SourceKey, rows)
	window := p.d.SplitWindow
	// The window is refilled a batch at a time rather than row by row: a
	// push of 17 rows cost the same round trips as one of 1,000.
	refill := max(1, min(p.d.BatchSize, window/4))
	// Rows past what an earlier feeder recorded as pushed may still have
	// been pushed by it (it died between a push and its progress write, at
	// most a batch); past those, no row can be recorded yet.
	checkUpTo := pushed + p.d.BatchSize
	var (
		batch      []*sidekiq.Job
		batchRows  []int
		last       = 0
		lastRenew  = time.Now()
		lastCheck  time.Time
		lastTotal  time.Time
		listed     = true
		seenListed = pushed > 0 // an earlier feeder of the run pushed rows
		dbEnded    = 0          // rows the database counts ended: Ruby's rows are only there
		badRows    = 0
		idle       = 10 * time.Millisecond
		eof        = false
		pushedRows = pushed
		wait       = time.NewTimer(time.Hour) // the window's poll, reset before each use
	)
	wait.Stop()
	defer wait.Stop()
	// Keys Redis evicts vanish as a person's deletion does; an eviction
	// since this count tells them apart.
	evicted, err := p.lost.Evictions(ctx)
	if err != nil {
		return err
	}
	for !eof || len(batch) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Since(lastRenew) > feedLease/3 {
			ok, err := p.leases.Renew(ctx, contract.FeederKey(token), feedLease)
			if err != nil {
				return err
			}
			if !ok {
				return errLeaseLost
			}
			lastRenew = time.Now()
		}
		if time.Since(lastCheck) > time.Second {
			lastCheck = time.Now()
			st, err := p.d.DB.StatusByToken(ctx, token)
			if err != nil {
				return err
			}
			if st.Ended() {
				log.Info("split stopped: the run has ended", "state", st.RunState())
				return nil
			}
			dbEnded = st.DoneCount + st.FailedCount
		}
		// The queue's listing is checked before every push, since the push
		// lists the queue again and would hide the deletion.
		listedNow, recorded, err := p.windowState(ctx, token, queue)
		if err != nil {
			return err
		}
		recorded = max(recorded, dbEnded)
		// Unlisted means deleted only once the queue was listed: before
		// this feeder's first push (the rows so far all bad) it never was.
		seenListed = seenListed || listedNow
		if seenListed {
			listed = listedNow
		}
		if !listed && recorded < pushedRows {
			if deleted, err := p.queueDeleted(ctx, log, token, queue, &evicted); err != nil {
				return err
			} else if deleted {
				return p.endRun(ctx, token, models.RunCancelled, "the run's queue "+queue+" was deleted from the dashboard")
			}
			listed = true
			continue
		}
		room := window - (pushedRows - recorded)
		if room < refill {
			// Rows end in any process (the token's workers may run
			// elsewhere), so the window is polled, backing off to 50 ms.
			wait.Reset(idle)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-wait.C:
			}
			idle = min(2*idle, 50*time.Millisecond)
			continue
		}
		idle = 10 * time.Millisecond
		if len(batch) == 0 {
			// Asked a batch at a time: a Ruby worker that starts serving
			// the queue gets the app's row_hash from the next batch on.
			src, err := p.refsFor(ctx, queue, source)
			if err != nil {
				return err
			}
			for len(batch) < min(room, p.d.BatchSize) {
				row, err := rows.Next()
				if errors.Is(err, io.EOF) {
					eof = true
					break
				}
				if err != nil {
					msg := fmt.Sprintf("CSV read stopped after row %d: %v", last, err)
					p.warnIf(p.d.DB.SetLastError(ctx, token, msg), "SetLastError")
					return fmt.Errorf("feed %s: %s", token, msg)
				}
				last = row.Number
				if row.Number <= pushed {
					continue // pushed before this feeder started
				}
				if row.Err != nil {
					isNew, _, err := p.recordRow(ctx, token, ledger.RowResult{Row: row.Number, Key: ledger.RowKey(row.Number, ""), Status: "failed",
						Error: row.ErrorText()})
					if err != nil {
						return err
					}
					if isNew {
						badRows++
						p.countRow(ctx, token, 0, 1)
					}
					pushedRows = row.Number
					continue
				}
				j, err := p.rowJob(queue, path, token, spec, rows.Headers(), row, src)
				if err != nil {
					return err
				}
				batch = append(batch, j)
				batchRows = append(batchRows, row.Number)
			}
		}
		check := len(batchRows) > 0 && batchRows[0] <= checkUpTo
		// Pushed only while the queue is listed, checked with the push:
		// a "Delete queue" between the check above and a plain push would
		// be undone by the push listing the queue again.
		err = p.pushRowsChecked(ctx, token, queue, batch, batchRows, check, listed && seenListed)
		if errors.Is(err, sidekiq.ErrQueueUnlisted) {
			listed = false // the batch is kept: the next turn pushes it, or ends the run
			continue
		}
		if err != nil {
			return err
		}
		seenListed = seenListed || len(batch) > 0
		batch, batchRows = batch[:0], batchRows[:0]
		pushedRows = last
		if err := p.ledger.SetSplitProgress(ctx, token, last); err != nil {
			return err
		}
		if !eof && last > 0 && time.Since(lastTotal) > time.Second {
			// The pages estimate the total from the first batch on: rows
			// so far scaled by the bytes still to read. The bytes are those
			// the rows came from (rows.Offset), not the reads ahead of them,
			// which made the estimate low by up to a 64 KiB buffer.
			lastTotal = time.Now()
			p.warnIf(p.d.DB.SetSplitProgress(ctx, token, rows.Offset(), size, last), "SetSplitProgress")
		}
	}
	p.warnIf(p.d.DB.SetSplitProgress(ctx, token, counted.n, max(size, counted.n), last), "SetSplitProgress")
	if err := p.d.DB.SetTotal(ctx, token, last); err != nil {
		return fmt.Errorf("feed %s: %w", token, err)
	}
	if err := p.ledger.SetTotal(ctx, token, last); err != nil {
		return fmt.Errorf("feed %s: %w", token, err)
	}
	p.warnIf(p.d.DB.SetState(ctx, token, models.RunProcessing, ""), "SetState")
	fin, err := p.newFinalizeJob(queue, spec.Type, spec.ReportID, token)
	if err != nil {
		return err
	}
	// The finalizer too is pushed only to a listed queue: a "Delete queue"
	// after the last rows' push would be undone by this one.
	for {
		var err error
		if seenListed {
			_, err = p.d.Client.PushListed(ctx, queue, []*sidekiq.Job{fin})
		} else {
			_, err = p.d.Client.Push(ctx, fin)
		}
		if !errors.Is(err, sidekiq.ErrQueueUnlisted) {
			if err != nil {
				return fmt.Errorf("feed %s: push finalize: %w", token, err)
			}
			break
		}
		_, recorded, err := p.windowState(ctx, token, queue)
		if err != nil {
			return err
		}
		if recorded >= last {
			// Every row has ended: nothing was thrown away.
			if _, err := p.d.Client.Push(ctx, fin); err != nil {
				return fmt.Errorf("feed %s: push finalize: %w", token, err)
			}
			break
		}
		if deleted, err := p.queueDeleted(ctx, log, token, queue, &evicted); err != nil {
			return err
		} else if deleted {
			return p.endRun(ctx, token, models.RunCancelled, "the run's queue "+queue+" was deleted from the dashboard")
		}
	}
	log.Info("split done", "rows", last, "bad_rows", badRows, "headers", len(rows.Headers()))
	return nil
}

// rowJob builds the row job of one CSV row: with src, one that names the
// row's bytes in the stored upload (contract.RowRef) instead of its cells.
func (p *Pipeline) rowJob(queue, path, token string, spec runSpec, headers []string, row csvrows.Row, src *rowSource) (*sidekiq.Job, error) {
	if src != nil {
		args := contract.RowArgs{Type: spec.Type, ReportID: spec.ReportID, Path: path, Token: token}
		ref := src.ref(row)
		c := contract.RowJob(queue, args, p.rowRetry(), row.Number, spec.TemplateKey)
		c.Args = args.RefPositional(ref)
		return toSidekiq(p.d.Client.Dialect(), c)
	}
	hash, err := encodeOrdered(headers, row.Fields, row.Nulls)
	if err != nil {
		return nil, err
	}
	args := contract.RowArgs{Row: hash, Type: spec.Type, ReportID: spec.ReportID, Path: path, Token: token}
	c := contract.RowJob(queue, args, p.rowRetry(), row.Number, spec.TemplateKey)
	// newRowJob is NewJob's payload without its reflection (one per row).
	j, err := newRowJob(args.Row, args.Type, args.ReportID, args.Path, args.Token)
	if err != nil {
		return nil, err
	}
	return j, withOptions(j, c)
}

// rowRetry is the `retry` of a row job (ROW_JOB_RETRY), or RetryDefault
// for the class's own.
func (p *Pipeline) rowRetry() int {
	if p.d.RowRetries == nil {
		return contract.RetryDefault
	}
	return *p.d.RowRetries
}

// pushRows pushes row jobs, leaving out the rows the ledger already holds
// (a run fed again after a crash or a rebuild).
func (p *Pipeline) pushRows(ctx context.Context, token string, jobs []*sidekiq.Job, nums []int) error {
	return p.pushRowsChecked(ctx, token, "", jobs, nums, true, false)
}

// pushRowsChecked is pushRows that asks the ledger only when check is set,
// and with listedOnly pushes to queue only while it is listed in "queues"
// (sidekiq.ErrQueueUnlisted when not).
func (p *Pipeline) pushRowsChecked(ctx context.Context, token, queue string, jobs []*sidekiq.Job, nums []int, check, listedOnly bool) error {
	if len(jobs) == 0 {
		return nil
	}
	keep := jobs
	if check {
		have, err := p.ledger.Recorded(ctx, token, nums)
		if err != nil {
			return err
		}
		keep = jobs[:0]
		for i, j := range jobs {
			if !have[i] {
				keep = append(keep, j)
			}
		}
	}
	if len(keep) == 0 {
		return nil
	}
	push := p.d.Client.PushBulk
	if listedOnly {
		push = func(ctx context.Context, jobs []*sidekiq.Job) ([]string, error) {
			return p.d.Client.PushListed(ctx, queue, jobs)
		}
	}
	if _, err := push(ctx, keep); err != nil {
		return fmt.Errorf("split %s: push rows: %w", token, err)
	}
	return nil
}

// queueDeleted tells, for a run's queue found missing from Sidekiq's
// "queues" set while rows of it wait, a person's "Delete queue" (the
// queue's work thrown away: the run is to be cancelled) from Redis losing
// data. Sidekiq's "Delete queue" removes the queue from "queues"; our own
// pushes always add it. When the run's own keys went too, Redis lost data:
// errRedisLost, and the supervisor feeds the run again from storage. When
// Redis evicted keys since *evicted, the queue is listed again (the
// supervisor pushes lost rows again) and *evicted moves on.
func (p *Pipeline) queueDeleted(ctx context.Context, log *slog.Logger, token, queue string, evicted *int64) (bool, error) {
	if survive, err := p.lost.RunKeysSurvive(ctx, token); err != nil {
		return false, err
	} else if !survive {
		log.Warn("the run's queue vanished with its own keys (Redis lost data): not a cancel; the split starts again from the upload")
		return false, errRedisLost
	}
	now, err := p.lost.Evictions(ctx)
	if err != nil {
		return false, err
	}
	if now <= *evicted {
		return true, nil
	}
	log.Warn("the run's queue was unlisted while Redis evicted keys (maxmemory): listed again, not a cancel", "evicted", now-*evicted)
	*evicted = now
	if err := p.lost.Relist(ctx, queue); err != nil {
		return false, err
	}
	return false, nil
}

// windowState reads in one round trip whether queue is in Sidekiq's
// "queues" set and how many of token's rows are recorded (Ledger.Count).
func (p *Pipeline) windowState(ctx context.Context, token, queue string) (listed bool, recorded int, err error) {
	c, err := p.d.Pool.GetContext(ctx)
	if err != nil {
		return false, 0, err
	}
	defer c.Close()
	_ = c.Send("SISMEMBER", "queues", queue)
	_ = c.Send("GET", contract.CountKey(token))
	_ = c.Send("HLEN", contract.RowsKey(token))
	vals, err := redis.Values(c.Do(""))
	if err != nil || len(vals) != 3 {
		return false, 0, fmt.Errorf("feed %s: window: %w", token, cmp.Or(err, errShortReply))
	}
	listed, err = redis.Bool(vals[0], nil)
	if err != nil {
		return false, 0, fmt.Errorf("feed %s: window: %w", token, cmp.Or(err, errShortReply))
	}
	n, err := redis.Int(vals[1], nil)
	if err != nil && !errors.Is(err, redis.ErrNil) {
		return false, 0, fmt.Errorf("feed %s: window: %w", token, cmp.Or(err, errShortReply))
	}
	j, err := redis.Int(vals[2], nil)
	if err != nil {
		return false, 0, fmt.Errorf("feed %s: window: %w", token, cmp.Or(err, errShortReply))
	}
	return listed, n + j, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}
