package sidekiq

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
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
	Weights     []map[string]int       `json:"weights"`
	Capsules    map[string]capsuleInfo `json:"capsules"`
	Labels      []string               `json:"labels"`
	Identity    string                 `json:"identity"`
	Version     string                 `json:"version"`
	Embedded    bool                   `json:"embedded"`
}

type capsuleInfo struct {
	Concurrency int            `json:"concurrency"`
	Mode        QueueMode      `json:"mode"`
	Weights     map[string]int `json:"weights"`
}

// floatSeconds formats t as float epoch seconds with a fraction.
func floatSeconds(t time.Time) string {
	return string(Dialect7.Timestamp(t))
}

func (s *Server) info() ([]byte, error) {
	weights := map[string]int{}
	for _, q := range s.opts.Queues {
		weights[q.Name] = q.Weight
	}
	return encodeJSON(processInfo{
		Hostname:    s.opts.Hostname,
		StartedAt:   json.Number(floatSeconds(s.started)),
		PID:         os.Getpid(),
		Tag:         s.opts.Tag,
		Concurrency: s.opts.Concurrency,
		Queues:      s.order.unique,
		Weights:     []map[string]int{weights},
		Capsules:    map[string]capsuleInfo{"default": {Concurrency: s.opts.Concurrency, Mode: s.order.mode, Weights: weights}},
		Labels:      s.opts.Labels,
		Identity:    s.identity,
		Version:     s.opts.Version,
	})
}

// workEntry is one value of the <identity>:work hash.
type workEntry struct {
	Queue   string `json:"queue"`
	Payload string `json:"payload"` // the job JSON as a string, as Sidekiq 6.2+ writes it
	RunAt   int64  `json:"run_at"`  // integer epoch seconds in every version
}

func (s *Server) workSnapshot() (map[string][]byte, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]byte, len(s.inflight))
	for tid, r := range s.inflight {
		b, err := encodeJSON(workEntry{Queue: r.uow.Queue, Payload: string(r.uow.Raw), RunAt: r.runAt.Unix()})
		if err == nil {
			out[tid] = b
		}
	}
	return out, len(s.inflight)
}

// beat writes one heartbeat: stats, running jobs, the process hash; then
// acts on a signal the Web UI sent (TSTP quiets, TERM stops, TTIN dumps).
func (s *Server) beat(ctx context.Context) error {
	s.flushStats(ctx)
	s.flushMetrics(ctx)
	info, err := s.info()
	if err != nil {
		return err
	}
	work, busy := s.workSnapshot()
	ttl := s.processTTL()
	var sig string
	err = s.do(ctx, func(c redis.Conn) error {
		if s.fetcher.Reliable() {
			// Re-asserted on every beat: a Redis that restarted empty
			// forgot it, and the lists written since must stay findable
			// by recoverOrphans if this process then dies.
			if err := rdb.RegisterInflight(c, s.identity, s.order.unique); err != nil {
				return fmt.Errorf("in-flight registration: %w", err)
			}
		}
		if err := rdb.WriteWork(c, s.identity, work, s.opts.Dialect == Dialect6, ttl); err != nil {
			return fmt.Errorf("work hash: %w", err)
		}
		rtt, err := rdb.Ping(c)
		if err != nil {
			return err
		}
		fields := []any{
			"info", info,
			"concurrency", s.opts.Concurrency,
			"busy", busy,
			"beat", floatSeconds(s.opts.Now()),
			"quiet", strconv.FormatBool(s.quiet.Load()),
			"rss", rssKB(),
			"rtt_us", rtt.Microseconds(),
		}
		sig, _, err = rdb.Beat(c, s.identity, fields, ttl)
		return err
	})
	if err != nil {
		return err
	}
	switch sig {
	case "":
	case "TSTP":
		s.log.Info("signal from Redis", "signal", sig)
		s.Quiet()
	case "TERM", "INT":
		s.log.Info("signal from Redis", "signal", sig)
		s.Stop()
	case "TTIN", "INFO":
		s.DumpWork()
	default:
		s.log.Warn("unknown signal from Redis ignored", "signal", sig)
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

func (s *Server) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.HeartbeatInterval)
	defer t.Stop()
	b := newBackoff()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.beat(ctx); err != nil {
			if ctx.Err() == nil {
				b.fail(s.log, "heartbeat", err)
			}
			continue
		}
		b.ok(s.log)
	}
}

// DumpWork logs what every processor is doing (Sidekiq's TTIN) and the
// goroutine count.
func (s *Server) DumpWork() {
	s.mu.Lock()
	tids := make([]string, 0, len(s.inflight))
	for tid := range s.inflight {
		tids = append(tids, tid)
	}
	sort.Strings(tids)
	for _, tid := range tids {
		r := s.inflight[tid]
		class := ""
		if r.job != nil {
			class = r.job.DisplayClass()
		}
		s.log.Info("busy", "tid", tid, "jid", jidOf(r), "class", class, "queue", r.uow.Queue,
			"running_for", s.opts.Now().Sub(r.runAt).Round(time.Millisecond).String())
	}
	s.mu.Unlock()
	s.log.Info("processors", "busy", len(tids), "concurrency", s.opts.Concurrency,
		"goroutines", runtime.NumGoroutine(), "quiet", s.quiet.Load())
}
