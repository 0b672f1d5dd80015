package sidekiq

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
)

// execMetrics buffers per-class execution counts between heartbeats and
// writes them where Sidekiq 7 and 8 keep them (lib/sidekiq/metrics/
// tracking.rb), so the Web UI's Metrics tab shows Go jobs: per-minute hashes
// j|<bucket> with fields <Class>|p (processed, failures included),
// <Class>|f (failed) and <Class>|ms (milliseconds of successful runs).
// Sidekiq 6.4 has no metrics and gets none.
type execMetrics struct {
	mu  sync.Mutex
	buf map[metricKey]*metricCounts
}

type metricKey struct {
	class  string
	minute int64 // unix minute, UTC
}

type metricCounts struct{ p, f, ms int64 }

func (m *execMetrics) record(class string, at time.Time, elapsed time.Duration, failed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.buf == nil {
		m.buf = map[metricKey]*metricCounts{}
	}
	k := metricKey{class: class, minute: at.Unix() / 60}
	c := m.buf[k]
	if c == nil {
		c = &metricCounts{}
		m.buf[k] = c
	}
	c.p++
	if failed {
		c.f++
	} else {
		c.ms += elapsed.Milliseconds()
	}
}

func (m *execMetrics) take() map[metricKey]*metricCounts {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.buf
	m.buf = nil
	return b
}

// metricBuckets are the hash keys and lifetimes for one minute: Sidekiq 7
// writes j|YYYYMMDD|H:M (8 h); Sidekiq 8 writes j|YYMMDD|H:MM (8 h) and a
// ten-minute j|YYMMDD|H:M-tens (72 h).
func metricBuckets(d Dialect, minute int64) []struct {
	key string
	ttl int
} {
	t := time.Unix(minute*60, 0).UTC()
	h, mi := strconv.Itoa(t.Hour()), t.Minute()
	switch d {
	case Dialect6:
		return nil
	case Dialect7:
		return []struct {
			key string
			ttl int
		}{{"j|" + t.Format("20060102") + "|" + h + ":" + strconv.Itoa(mi), 8 * 3600}}
	}
	day := t.Format("060102")
	return []struct {
		key string
		ttl int
	}{
		{"j|" + day + "|" + h + ":" + t.Format("04"), 8 * 3600},
		{"j|" + day + "|" + h + ":" + strconv.Itoa(mi/10), 72 * 3600},
	}
}

// flushMetrics writes the buffered counts; on error they are dropped (the
// metrics are advisory and must never hold the heartbeat up).
func (s *Server) flushMetrics(ctx context.Context) {
	buf := s.metrics.take()
	if len(buf) == 0 {
		return
	}
	_ = s.do(ctx, func(c redis.Conn) error {
		n := 0
		for k, v := range buf {
			for _, b := range metricBuckets(s.opts.Dialect, k.minute) {
				_ = c.Send("HINCRBY", b.key, k.class+"|p", v.p)
				n++
				if v.f > 0 {
					_ = c.Send("HINCRBY", b.key, k.class+"|f", v.f)
					n++
				}
				if v.ms > 0 {
					_ = c.Send("HINCRBY", b.key, k.class+"|ms", v.ms)
					n++
				}
				_ = c.Send("EXPIRE", b.key, b.ttl)
				n++
			}
		}
		if err := c.Flush(); err != nil {
			return err
		}
		for range n {
			if _, err := c.Receive(); err != nil {
				return err
			}
		}
		return nil
	})
}
