package sidekiq

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

// processInfo is the "info" JSON of the heartbeat hash: the union of what
// Sidekiq 6.4 through 8.1 Web UIs read (queues for 6.x, weights for 7.x,
// capsules for 8.0.9+, integer concurrency for all).
type processInfo struct {
	Hostname    string                 `json:"hostname"`
	StartedAt   json.Number            `json:"started_at"`
	PID         int                    `json:"pid"`
	Tag         string                 `json:"tag"`
	Concurrency int                    `json:"concurrency"`
	Queues      []string               `json:"queues"`
	Weights     []queueWeights         `json:"weights"`
	Capsules    map[string]capsuleInfo `json:"capsules"`
	Labels      []string               `json:"labels"`
	Identity    string                 `json:"identity"`
	Version     string                 `json:"version"`
	Embedded    bool                   `json:"embedded"`
}

type capsuleInfo struct {
	Concurrency int          `json:"concurrency"`
	Mode        QueueMode    `json:"mode"`
	Weights     queueWeights `json:"weights"`
}

// queueWeights is a capsule's weights hash written in queue order, as
// Ruby's Hash keeps insertion order (capsule.rb queues=): the Busy page
// lists a process's queues in this order, which for strict queues is the
// order they are fetched in. A queue named twice keeps its first place and
// its last weight, as @weights[name] = weight does.
type queueWeights []QueueWeight

func newQueueWeights(qs []QueueWeight) queueWeights {
	var w queueWeights
	at := map[string]int{}
	for _, q := range qs {
		if i, ok := at[q.Name]; ok {
			w[i].Weight = q.Weight
			continue
		}
		at[q.Name] = len(w)
		w = append(w, q)
	}
	return w
}

func (w queueWeights) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, q := range w {
		if i > 0 {
			b = append(b, ',')
		}
		name, err := encodeJSON(q.Name)
		if err != nil {
			return nil, err
		}
		b = append(b, name...)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(q.Weight), 10)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON reads a weights hash back in its order, so the read API
// (Processes, and through it the supervisor's consumers of a queue) can
// decode the info it wrote. Ruby writes integer weights; anything else
// in a value is refused.
func (w *queueWeights) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fmt.Errorf("weights: want an object")
	}
	var out queueWeights
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return fmt.Errorf("weights: %w", err)
		}
		name, _ := t.(string)
		var n json.Number
		if err := dec.Decode(&n); err != nil {
			return fmt.Errorf("weights of %q: %w", name, err)
		}
		weight, err := n.Int64()
		if err != nil {
			return fmt.Errorf("weights of %q: %w", name, err)
		}
		out = append(out, QueueWeight{Name: name, Weight: int(weight)})
	}
	*w = out
	return nil
}

// floatSeconds formats t as float epoch seconds with a fraction.
func floatSeconds(t time.Time) string {
	return string(Dialect7.Timestamp(t))
}

func (s *Server) info() ([]byte, error) {
	weights := newQueueWeights(s.opts.Queues)
	return encodeJSON(processInfo{
		Hostname:    s.opts.Hostname,
		StartedAt:   json.Number(floatSeconds(s.started)),
		PID:         os.Getpid(),
		Tag:         s.opts.Tag,
		Concurrency: s.opts.Concurrency,
		Queues:      s.order.unique,
		Weights:     []queueWeights{weights},
		Capsules:    map[string]capsuleInfo{"default": {Concurrency: s.opts.Concurrency, Mode: s.order.mode, Weights: weights}},
		Labels:      s.opts.Labels,
		Identity:    s.identity,
		Version:     s.opts.Version,
	})
}

// capsuleBeat is what a Process's heartbeat writes for one capsule.
type capsuleBeat struct {
	identity       string   // the capsule's own, owner of its in-flight lists
	inflightQueues []string // nil with basic fetch
}

// workEntry is one value of the <identity>:work hash.
type workEntry struct {
	Queue   string `json:"queue"`
	Payload string `json:"payload"` // the job JSON as a string, as Sidekiq 6.2+ writes it
	RunAt   int64  `json:"run_at"`  // integer epoch seconds in every version
}

func (s *Server) workSnapshot() (map[string][]byte, int) {
	jobs := s.runningJobs()
	out := make(map[string][]byte, len(jobs))
	for tid, r := range jobs {
		b, err := encodeJSON(workEntry{Queue: r.uow.Queue, Payload: string(r.uow.Raw), RunAt: r.runAt.Unix()})
		if err == nil {
			out[tid] = b
		}
	}
	return out, len(jobs)
}

// heartbeat is Sidekiq's launcher ❤ (launcher.rb): every interval it
// flushes the stats, writes the process's running jobs and its hash, and
// acts on a signal the Web UI left for it. While it beats, the Web UI shows
// the process and other processes leave its in-flight jobs alone.
type heartbeat struct {
	heartbeatParams
	// mu makes beats one at a time: a Process's capsules beat as they join
	// and leave, beside the loop, and a beat's info must not be overwritten
	// by an older one. ended (set by end) stops every later beat.
	mu    sync.Mutex
	ended bool
}

// end runs clear, the entry's removal, once no beat runs, and stops the
// beats that would follow (a capsule's leave racing the last one's).
func (h *heartbeat) end(clear func() error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended = true
	return clear()
}

type heartbeatParams struct {
	pool        *redis.Pool
	log         *slog.Logger
	identity    string
	interval    time.Duration
	ttl         int        // lifetime of the process and work hashes, whole seconds
	concurrency func() int // the hash's "concurrency" field
	// legacyWork also writes <identity>:workers, which Sidekiq 6.4.1 reads.
	legacyWork bool
	// inflightQueues are re-registered in the in-flight index at every
	// beat (reliable fetch; nil for basic fetch): a Redis that restarted
	// empty forgot them, and the lists written since must stay findable by
	// other processes' recoverers if this one then dies.
	inflightQueues []string
	// capsules, set for a Process, lists the Servers beating in this
	// entry now: each one's in-flight registration and liveness key are
	// written at every beat.
	capsules func() []capsuleBeat
	now      func() time.Time
	info     func() ([]byte, error) // the hash's "info" JSON
	running  func() (work map[string][]byte, busy int)
	quiet    func() bool
	// rss is the process's memory in KB for the hash's "rss"; nil reads it.
	rss func() int64
	// flushStats writes the processed/failed counts, before each beat as
	// launcher.rb does, and once more when the server stops.
	flushStats func(context.Context)
	// onQuiet, onStop and onDump act on the Web UI's TSTP, TERM and TTIN.
	onQuiet, onStop, onDump func()
	// onBeat, when set, hears of every beat attempt (Options.OnBeat).
	onBeat func(at time.Time, err error)
}

func newHeartbeat(p heartbeatParams) *heartbeat { return &heartbeat{heartbeatParams: p} }

func (h *heartbeat) rssKB() int64 {
	if h.rss != nil {
		return h.rss()
	}
	return rssKB()
}

// run beats every interval until ctx is done. The first beat is the
// server's, before it starts its parts.
func (h *heartbeat) run(ctx context.Context) {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	b := newBackoff()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := h.runOnce(ctx)
		if h.onBeat != nil && ctx.Err() == nil {
			h.onBeat(h.now(), err)
		}
		if err != nil {
			if ctx.Err() == nil {
				b.fail(h.log, "heartbeat", err)
			}
			continue
		}
		b.ok(h.log)
	}
}

// runOnce writes one heartbeat: stats, running jobs, the process hash; then
// acts on a signal the Web UI sent (TSTP quiets, TERM stops, TTIN dumps).
func (h *heartbeat) runOnce(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended {
		return nil
	}
	h.flushStats(ctx)
	info, err := h.info()
	if err != nil {
		return err
	}
	work, busy := h.running()
	c, err := h.pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if h.inflightQueues != nil {
		if err := rdb.RegisterInflight(c, h.identity, h.inflightQueues); err != nil {
			return fmt.Errorf("in-flight registration: %w", err)
		}
	}
	if h.capsules != nil {
		for _, cb := range h.capsules() {
			if cb.inflightQueues != nil {
				if err := rdb.RegisterInflight(c, cb.identity, cb.inflightQueues); err != nil {
					return fmt.Errorf("in-flight registration of capsule %s: %w", cb.identity, err)
				}
			}
			if err := rdb.BeatCapsule(c, cb.identity, h.identity, h.ttl); err != nil {
				return fmt.Errorf("capsule %s: %w", cb.identity, err)
			}
		}
	}
	if err := rdb.WriteWork(c, h.identity, work, h.legacyWork, h.ttl); err != nil {
		return fmt.Errorf("work hash: %w", err)
	}
	rtt, err := rdb.Ping(c)
	if err != nil {
		return err
	}
	fields := []any{
		"info", info,
		"concurrency", h.concurrency(),
		"busy", busy,
		"beat", floatSeconds(h.now()),
		"quiet", strconv.FormatBool(h.quiet()),
		"rss", h.rssKB(),
		"rtt_us", rtt.Microseconds(),
	}
	sig, _, err := rdb.Beat(c, h.identity, fields, h.ttl)
	if err != nil {
		return err
	}
	switch sig {
	case "":
	case "TSTP":
		h.log.Info("signal from Redis", "signal", sig)
		h.onQuiet()
	case "TERM", "INT":
		h.log.Info("signal from Redis", "signal", sig)
		h.onStop()
	case "TTIN", "INFO":
		h.onDump()
	default:
		h.log.Warn("unknown signal from Redis ignored", "signal", sig)
	}
	return nil
}

// processTTL is the heartbeat hash lifetime in whole seconds: Options.ProcessTTL
// (Sidekiq's 60 s by default), so a killed process's jobs come back after it.
func (s *Server) processTTL() int {
	return max(1, int(math.Ceil(s.opts.ProcessTTL.Seconds())))
}

func (s *Server) flushStats(ctx context.Context) {
	p, f := s.processed.Swap(0), s.failed.Swap(0)
	if p == 0 && f == 0 {
		return
	}
	if err := s.do(ctx, func(c redis.Conn) error { return rdb.FlushStats(c, s.opts.Now(), p, f) }); err != nil {
		// Keep the counts for the next beat.
		s.processed.Add(p)
		s.failed.Add(f)
	}
}

// DumpWork logs what every processor is doing (Sidekiq's TTIN) and the
// goroutine count.
func (s *Server) DumpWork() {
	jobs := s.runningJobs()
	tids := make([]string, 0, len(jobs))
	for tid := range jobs {
		tids = append(tids, tid)
	}
	sort.Strings(tids)
	for _, tid := range tids {
		r := jobs[tid]
		class := ""
		if r.job != nil {
			class = r.job.DisplayClass()
		}
		s.log.Info("busy", "tid", tid, "jid", jidOf(r), "class", class, "queue", r.uow.Queue,
			"running_for", s.opts.Now().Sub(r.runAt).Round(time.Millisecond).String())
	}
	s.log.Info("processors", "busy", len(tids), "concurrency", s.opts.Concurrency,
		"goroutines", runtime.NumGoroutine(), "quiet", s.quiet.Load())
}
