package sidekiq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

// API reads and manages Sidekiq's data as lib/sidekiq/api.rb and the Web UI
// do: stats, queues, the retry, scheduled and dead sets, processes and
// running jobs. The server runtime never uses it.
type API struct {
	pool   *redis.Pool
	client *Client
	now    func() time.Time
	limits rdb.DeadLimits
}

// NewAPI returns an API on pool; d is the format used when it re-pushes jobs.
func NewAPI(pool *redis.Pool, d Dialect) *API {
	return &API{
		pool:   pool,
		client: NewClient(pool, ClientOptions{Dialect: d}),
		now:    time.Now,
		limits: rdb.DeadLimits{MaxJobs: 10000, Timeout: 180 * 24 * time.Hour},
	}
}

func (a *API) do(ctx context.Context, f func(redis.Conn) error) error {
	c, err := a.pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return f(c)
}

// Stats are the Dashboard's totals (Sidekiq::Stats).
type Stats struct {
	Processed, Failed            int64
	Scheduled, Retries, Dead     int64
	Processes, Workers, Enqueued int64
	DefaultLatency               float64 // seconds
}

// Stats reads the Dashboard totals.
func (a *API) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	err := a.do(ctx, func(c redis.Conn) error {
		t, err := rdb.ReadTotals(c)
		s.Processed, s.Failed = t.Processed, t.Failed
		s.Scheduled, s.Retries, s.Dead, s.Processes = t.Scheduled, t.Retries, t.Dead, t.Processes
		return err
	})
	if err != nil {
		return s, fmt.Errorf("stats: %w", err)
	}
	qs, err := a.Queues(ctx)
	if err != nil {
		return s, err
	}
	for _, q := range qs {
		s.Enqueued += q.Size
		if q.Name == "default" {
			s.DefaultLatency = q.Latency
		}
	}
	ps, err := a.Processes(ctx)
	if err != nil {
		return s, err
	}
	for _, p := range ps {
		s.Workers += int64(p.Busy)
	}
	return s, nil
}

// DayStat is one day of the processed/failed history.
type DayStat struct {
	Date              string // YYYY-MM-DD, UTC
	Processed, Failed int64
}

// History reads the daily counters of the last days days, newest first.
func (a *API) History(ctx context.Context, days int) ([]DayStat, error) {
	now := a.now()
	out := make([]DayStat, days)
	ds := make([]time.Time, days)
	for i := range days {
		ds[i] = now.AddDate(0, 0, -i)
		out[i].Date = ds[i].UTC().Format("2006-01-02")
	}
	err := a.do(ctx, func(c redis.Conn) error {
		counts, err := rdb.ReadDays(c, ds)
		for i, n := range counts {
			out[i].Processed, out[i].Failed = n.Processed, n.Failed
		}
		return err
	})
	return out, err
}

// QueueInfo is one queue's size and latency.
type QueueInfo struct {
	Name    string
	Size    int64
	Latency float64 // seconds since the oldest job was enqueued
}

// Queues lists every known queue, sorted by name.
func (a *API) Queues(ctx context.Context) ([]QueueInfo, error) {
	var out []QueueInfo
	err := a.do(ctx, func(c redis.Conn) error {
		heads, err := rdb.ReadQueueHeads(c)
		if err != nil {
			return err
		}
		now := a.now()
		for _, h := range heads {
			out = append(out, QueueInfo{Name: h.Name, Size: h.Size, Latency: latency(h.Oldest, now)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queues: %w", err)
	}
	return out, nil
}

func latency(raw []byte, now time.Time) float64 {
	if raw == nil {
		return 0
	}
	j, err := ParseJob(raw)
	if err != nil {
		return 0
	}
	t, ok := j.Time("enqueued_at")
	if !ok {
		t, ok = j.Time("created_at")
	}
	if !ok {
		return 0
	}
	return max(now.Sub(t).Seconds(), 0)
}

// Entry is a job as listed by the API: its raw bytes, its parsed form (nil
// if it is not valid JSON) and, in sorted sets, its score.
type Entry struct {
	Raw   []byte
	Job   *Job
	Score float64
	Err   error // why Job is nil
}

// Key identifies a sorted-set entry as the Web UI does: "<score>-<jid>".
func (e Entry) Key() string {
	jid := ""
	if e.Job != nil {
		jid = e.Job.JID
	}
	return strconv.FormatFloat(e.Score, 'f', -1, 64) + "-" + jid
}

func newEntry(raw []byte, score float64) Entry {
	j, err := ParseJob(raw)
	return Entry{Raw: raw, Job: j, Score: score, Err: err}
}

// QueueJobs lists jobs of a queue, next to run first.
func (a *API) QueueJobs(ctx context.Context, queue string, start, count int) ([]Entry, error) {
	var out []Entry
	err := a.do(ctx, func(c redis.Conn) error {
		raws, err := rdb.QueueRange(c, queue, start, count)
		for _, raw := range raws {
			out = append(out, newEntry(raw, 0))
		}
		return err
	})
	return out, err
}

// DeleteQueueJob removes one job from a queue by its exact bytes.
func (a *API) DeleteQueueJob(ctx context.Context, queue string, raw []byte) (bool, error) {
	var ok bool
	err := a.do(ctx, func(c redis.Conn) error {
		var err error
		ok, err = rdb.RemoveFromQueue(c, queue, raw)
		return err
	})
	return ok, err
}

// ClearQueue deletes a queue and its jobs, as the Web UI's "Delete" on a queue.
func (a *API) ClearQueue(ctx context.Context, queue string) error {
	return a.do(ctx, func(c redis.Conn) error {
		_, err := rdb.DeleteQueue(c, queue)
		return err
	})
}

// SetName is one of Sidekiq's job sorted sets.
type SetName string

// The sorted sets.
const (
	RetrySet     SetName = rdb.KeyRetry
	ScheduledSet SetName = rdb.KeySchedule
	DeadSet      SetName = rdb.KeyDead
)

// SetSize is the number of entries in a set.
func (a *API) SetSize(ctx context.Context, set SetName) (int64, error) {
	var n int64
	err := a.do(ctx, func(c redis.Conn) error {
		var err error
		n, err = rdb.SetSize(c, string(set))
		return err
	})
	return n, err
}

// SetEntries lists entries of a set; the dead set newest first, the others
// soonest first, as the Web UI shows them.
func (a *API) SetEntries(ctx context.Context, set SetName, start, count int) ([]Entry, error) {
	var out []Entry
	err := a.do(ctx, func(c redis.Conn) error {
		ms, err := rdb.Range(c, string(set), start, start+count-1, set == DeadSet)
		if err != nil {
			return err
		}
		for _, m := range ms {
			out = append(out, newEntry(m.Raw, m.Score))
		}
		return nil
	})
	return out, err
}

// ErrNotFound is returned when an entry is no longer there.
var ErrNotFound = errors.New("job not found")

// Find returns the entry with that score and jid.
func (a *API) Find(ctx context.Context, set SetName, score float64, jid string) (Entry, error) {
	var e Entry
	err := a.do(ctx, func(c redis.Conn) error {
		raws, err := rdb.AtScore(c, string(set), strconv.FormatFloat(score, 'f', -1, 64))
		if err != nil {
			return err
		}
		for _, raw := range raws {
			if bytes.Contains(raw, []byte(jid)) {
				if cand := newEntry(raw, score); cand.Job != nil && cand.Job.JID == jid || cand.Job == nil && jid == "" {
					e = cand
					return nil
				}
			}
		}
		return ErrNotFound
	})
	return e, err
}

// ParseKey splits a Web UI key "<score>-<jid>".
func ParseKey(key string) (float64, string, error) {
	i := bytes.LastIndexByte([]byte(key), '-')
	if i < 0 {
		return 0, "", fmt.Errorf("bad job key %q", key)
	}
	f, err := strconv.ParseFloat(key[:i], 64)
	if err != nil {
		return 0, "", fmt.Errorf("bad job key %q: %w", key, err)
	}
	return f, key[i+1:], nil
}

// Delete removes an entry by its exact bytes.
func (a *API) Delete(ctx context.Context, set SetName, e Entry) (bool, error) {
	var n int
	err := a.do(ctx, func(c redis.Conn) error {
		var err error
		n, err = rdb.RemoveMembers(c, string(set), e.Raw)
		return err
	})
	return n > 0, err
}

// RetryNow moves an entry to its queue now, with a fresh enqueued_at and,
// for retry and dead entries, retry_count lowered by one ("manual retries do
// not count", as in Sidekiq). The move is atomic.
func (a *API) RetryNow(ctx context.Context, set SetName, e Entry) error {
	if e.Job == nil {
		return fmt.Errorf("retry: %w", e.Err)
	}
	j := e.Job.Clone()
	var count int
	if ok, _ := j.Field("retry_count", &count); ok && set != ScheduledSet {
		_ = j.SetField("retry_count", count-1)
	}
	if j.Queue == "" {
		j.Queue = "default"
	}
	j.SetTime("enqueued_at", a.now(), a.client.Dialect())
	data, err := j.Encode()
	if err != nil {
		return err
	}
	return a.do(ctx, func(c redis.Conn) error {
		ok, err := rdb.Promote(c, string(set), j.Queue, e.Raw, data)
		if err == nil && !ok {
			err = ErrNotFound
		}
		return err
	})
}

// Requeue moves entry e of set to job's queue as job, atomically: a job
// sent back to run in another form. ErrNotFound when e is no longer there
// (another process moved it first).
func (a *API) Requeue(ctx context.Context, set SetName, e Entry, job *Job) error {
	if job.Queue == "" {
		return errors.New("requeue: job without a queue")
	}
	data, err := job.Encode()
	if err != nil {
		return fmt.Errorf("requeue: %w", err)
	}
	return a.do(ctx, func(c redis.Conn) error {
		ok, err := rdb.Promote(c, string(set), job.Queue, e.Raw, data)
		if err == nil && !ok {
			err = ErrNotFound
		}
		return err
	})
}

// Kill moves a retry or scheduled entry to the dead set.
func (a *API) Kill(ctx context.Context, set SetName, e Entry) error {
	return a.do(ctx, func(c redis.Conn) error {
		ok, err := rdb.MoveToDead(c, string(set), e.Raw, a.now(), a.limits)
		if err == nil && !ok {
			err = ErrNotFound
		}
		return err
	})
}

// ClearSet deletes every entry of a set.
func (a *API) ClearSet(ctx context.Context, set SetName) error {
	return a.do(ctx, func(c redis.Conn) error { return rdb.Unlink(c, string(set)) })
}

// Process is one live process as the Busy page shows it.
type Process struct {
	Identity    string
	Hostname    string
	PID         int
	Tag         string
	Concurrency int
	Queues      []string
	Labels      []string
	Version     string
	StartedAt   time.Time
	Beat        time.Time
	Busy        int
	Quiet       bool
	RSSKB       int64
}

// Processes lists processes whose heartbeat is alive, by identity.
func (a *API) Processes(ctx context.Context) ([]Process, error) {
	var out []Process
	err := a.do(ctx, func(c redis.Conn) error {
		hs, err := rdb.ReadProcesses(c)
		if err != nil {
			return err
		}
		for _, h := range hs {
			if h.Info == "" {
				continue // expired: a dead process Ruby's API would prune
			}
			p := Process{Identity: h.Identity}
			var info processInfo
			if err := unmarshalNumber([]byte(h.Info), &info); err == nil {
				p.Hostname, p.PID, p.Tag, p.Concurrency = info.Hostname, info.PID, info.Tag, info.Concurrency
				p.Queues, p.Labels, p.Version = info.Queues, info.Labels, info.Version
				if t, ok := ParseTimestamp([]byte(info.StartedAt)); ok {
					p.StartedAt = t
				}
			}
			p.Busy, _ = strconv.Atoi(h.Busy)
			if f, err := strconv.ParseFloat(h.Beat, 64); err == nil {
				p.Beat = time.Unix(0, int64(f*1e9))
			}
			p.Quiet = h.Quiet == "true"
			p.RSSKB, _ = strconv.ParseInt(h.RSS, 10, 64)
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// Work is one running job as the Busy page shows it.
type Work struct {
	Identity, TID, Queue string
	RunAt                time.Time
	Job                  *Job
}

// Workers lists the running jobs of every live process.
func (a *API) Workers(ctx context.Context) ([]Work, error) {
	ps, err := a.Processes(ctx)
	if err != nil {
		return nil, err
	}
	return a.workersOf(ctx, ps)
}

// workersOf lists the running jobs of the processes ps, oldest first.
func (a *API) workersOf(ctx context.Context, ps []Process) ([]Work, error) {
	var out []Work
	err := a.do(ctx, func(c redis.Conn) error {
		for _, p := range ps {
			m, err := rdb.ReadWork(c, p.Identity)
			if err != nil {
				return err
			}
			for tid, v := range m {
				var w workEntry
				if err := unmarshalNumber([]byte(v), &w); err != nil {
					continue
				}
				j, _ := ParseJob([]byte(w.Payload))
				out = append(out, Work{Identity: p.Identity, TID: tid, Queue: w.Queue, RunAt: time.Unix(w.RunAt, 0), Job: j})
			}
		}
		return nil
	})
	sort.Slice(out, func(i, k int) bool { return out[i].RunAt.Before(out[k].RunAt) })
	return out, err
}

// Signal sends TSTP (quiet), TERM (stop) or TTIN (dump) to a process, as
// the Web UI's buttons do.
func (a *API) Signal(ctx context.Context, identity, sig string) error {
	switch sig {
	case "TSTP", "TERM", "TTIN":
	default:
		return fmt.Errorf("signal %q: want TSTP, TERM or TTIN", sig)
	}
	return a.do(ctx, func(c redis.Conn) error { return rdb.Signal(c, identity, sig) })
}

// Pending counts the work left for one queue: jobs waiting in it, jobs for
// it in the schedule and retry sets, and jobs of it running now (from the
// reliable-fetch in-flight lists and the work hashes of live processes).
type Pending struct {
	Enqueued, Scheduled, Retries, Running int
}

// Total is all the work left.
func (p Pending) Total() int { return p.Enqueued + p.Scheduled + p.Retries + p.Running }

// PendingFor counts the work left for queue. Running counts the queue's
// reliable-fetch in-flight jobs or, when there are none, the jobs that
// processes report in their work hashes (basic-fetch processes, Ruby or Go,
// show running jobs only there).
func (a *API) PendingFor(ctx context.Context, queue string) (Pending, error) {
	w, err := a.walkQueue(ctx, queue, false)
	if err != nil {
		return Pending{}, fmt.Errorf("pending for %s: %w", queue, err)
	}
	p := Pending{Enqueued: w.enqueued, Scheduled: len(w.Scheduled), Retries: len(w.Retrying), Running: w.inFlight}
	if p.Running == 0 {
		p.Running = w.Busy
	}
	return p, nil
}

// PurgeQueue removes a queue with all its jobs, and its jobs waiting in the
// schedule and retry sets; it returns how many jobs it removed.
func (a *API) PurgeQueue(ctx context.Context, queue string) (int, error) {
	n := 0
	err := a.do(ctx, func(c redis.Conn) error {
		// The sets first: a job a poller promotes meanwhile (atomically,
		// so either our ZREM or its push wins) is then in the list, which
		// goes last.
		for _, set := range []string{rdb.KeySchedule, rdb.KeyRetry} {
			members, err := membersInSet(c, set, queue)
			if err != nil {
				return err
			}
			k, err := rdb.RemoveMembers(c, set, members...)
			if err != nil {
				return err
			}
			n += k
		}
		l, err := rdb.DeleteQueue(c, queue)
		n += l
		return err
	})
	if err != nil {
		return n, fmt.Errorf("purge %s: %w", queue, err)
	}
	return n, nil
}

// PurgeQueueKeepingForeign is PurgeQueue, except that each job for which
// foreign gives a reason goes to the dead set with that reason instead of
// vanishing: a run's queue is purged when the run ends, and a job another
// client pushed onto it (or one that failed there) must stay visible, as
// Sidekiq keeps every job it could not run. At most examine jobs are
// looked at; the rest go as PurgeQueue's do.
func (a *API) PurgeQueueKeepingForeign(ctx context.Context, queue string, examine int, foreign func(Entry) string) (purged, killed int, err error) {
	err = a.do(ctx, func(c redis.Conn) error {
		var cands [][]byte
		for _, set := range []string{rdb.KeySchedule, rdb.KeyRetry} {
			members, err := membersInSet(c, set, queue)
			if err != nil {
				return err
			}
			cands = append(cands, members...)
		}
		listed, err := rdb.QueueRange(c, queue, 0, examine)
		if err != nil {
			return err
		}
		now := a.now()
		for _, raw := range append(cands, listed...) {
			if killed >= examine {
				break
			}
			reason := foreign(newEntry(raw, 0))
			if reason == "" {
				continue
			}
			if err := rdb.Kill(c, now, a.limits, withDeathReason(raw, reason, now)); err != nil {
				return err
			}
			killed++
		}
		for _, set := range []string{rdb.KeySchedule, rdb.KeyRetry} {
			members, err := membersInSet(c, set, queue)
			if err != nil {
				return err
			}
			k, err := rdb.RemoveMembers(c, set, members...)
			if err != nil {
				return err
			}
			purged += k
		}
		l, err := rdb.DeleteQueue(c, queue)
		purged += l
		return err
	})
	if err != nil {
		return purged, killed, fmt.Errorf("purge %s: %w", queue, err)
	}
	return purged, killed, nil
}

// withDeathReason records why a job was killed in its payload, keeping an
// error it already had (a retry entry's) ahead of the reason. A payload that
// is not a JSON object goes to the dead set as it came, as Sidekiq does.
func withDeathReason(raw []byte, reason string, now time.Time) []byte {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil || fields == nil {
		return raw
	}
	msg := reason
	var prev string
	if json.Unmarshal(fields["error_message"], &prev) == nil && prev != "" {
		msg = prev + " (" + reason + ")"
	}
	if _, ok := fields["error_class"]; !ok {
		fields["error_class"], _ = json.Marshal("Pallarel::LeftoverJob")
	}
	fields["error_message"], _ = json.Marshal(msg)
	fields["failed_at"], _ = json.Marshal(float64(now.UnixMilli()) / 1000)
	out, err := json.Marshal(fields)
	if err != nil {
		return raw
	}
	return out
}
