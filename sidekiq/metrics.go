package sidekiq

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

// execMetrics buffers per-class execution counts between heartbeats and
// writes them where Sidekiq 7 and 8 keep them (lib/sidekiq/metrics/
// tracking.rb), so the Web UI's Metrics tab shows Go jobs: per-minute hashes
// j|<bucket> with fields <Class>|p (processed, failures included),
// <Class>|f (failed) and <Class>|ms (milliseconds of successful runs,
// written as soon as one run succeeded, even when 0), and the per-class
// histogram of successful run times (metrics/shared.rb) that the job's
// Metrics page charts. Sidekiq 6.4 has no metrics and gets none. Only jobs
// whose class has a handler count: Ruby's tracking is server middleware,
// which an unknown class never reaches.
type execMetrics struct {
	mu  sync.Mutex
	buf map[metricKey]*metricCounts
}

type metricKey struct {
	class  string
	minute int64 // unix minute, UTC
}

type metricCounts struct {
	p, f, ms int64
	ok       bool // a run succeeded: |ms and the histogram are written
	hist     [len(histogramBuckets)]uint16
}

// histogramBuckets are the upper bounds in ms of Sidekiq's histogram
// buckets (metrics/shared.rb BUCKET_INTERVALS); the last catches the rest.
var histogramBuckets = [...]int64{
	20, 30, 45, 65, 100,
	150, 225, 335, 500, 750,
	1100, 1700, 2500, 3800, 5750,
	8500, 13000, 20000, 30000, 45000,
	65000, 100000, 150000, 225000, 335000,
	math.MaxInt64,
}

// histogramTTL is HISTOGRAM_TTL: 8 hours.
const histogramTTL = 8 * 3600

func histogramBucket(ms int64) int {
	for i, b := range histogramBuckets {
		if ms < b {
			return i
		}
	}
	return len(histogramBuckets) - 1
}

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
		ms := elapsed.Milliseconds()
		c.ms += ms
		c.ok = true
		if b := histogramBucket(ms); c.hist[b] < math.MaxUint16 {
			c.hist[b]++
		}
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

// histogramKey is the key of one class's histogram for one minute: Sidekiq
// 8 writes h|<Class>-<d>-<H>:<M> (no padding), 7.x <Class>-<dd>-<HH>:<M>.
func histogramKey(d Dialect, class string, minute int64) string {
	t := time.Unix(minute*60, 0).UTC()
	if d == Dialect7 {
		return class + "-" + t.Format("02-15") + ":" + strconv.Itoa(t.Minute())
	}
	return "h|" + class + "-" + strconv.Itoa(t.Day()) + "-" + strconv.Itoa(t.Hour()) + ":" + strconv.Itoa(t.Minute())
}

// metricsFlusher writes the execution metrics the processors buffer, every
// interval (Sidekiq flushes them at each heartbeat, metrics/tracking.rb) and
// once more when the server stops.
type metricsFlusher struct {
	metricsFlusherParams
}

type metricsFlusherParams struct {
	pool     *redis.Pool
	dialect  Dialect // Dialect6 writes none: Sidekiq 6.4 has no metrics
	interval time.Duration
	buf      *execMetrics
	log      *slog.Logger
}

func newMetricsFlusher(p metricsFlusherParams) *metricsFlusher {
	return &metricsFlusher{metricsFlusherParams: p}
}

// run flushes every interval until ctx is done.
func (m *metricsFlusher) run(ctx context.Context) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Metrics are best effort, as in Sidekiq: a failed write loses
		// that minute's counts, which the log says.
		if err := m.runOnce(ctx); err != nil && ctx.Err() == nil && m.log != nil {
			m.log.Warn("write job metrics", "err", err)
		}
	}
}

// runOnce writes the buffered counts. On error they are dropped: the
// metrics are advisory, and keeping them would let an outage grow the
// buffer without bound.
func (m *metricsFlusher) runOnce(ctx context.Context) error {
	buf := m.buf.take()
	if len(buf) == 0 || m.dialect == Dialect6 {
		return nil
	}
	writes := metricsWrites(m.dialect, buf)
	c, err := m.pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return rdb.WriteMetrics(c, writes)
}

// metricsWrites turns buffered counts into what rdb.WriteMetrics writes.
func metricsWrites(d Dialect, buf map[metricKey]*metricCounts) []rdb.ClassMetrics {
	out := make([]rdb.ClassMetrics, 0, len(buf))
	for k, v := range buf {
		m := rdb.ClassMetrics{
			Class:        k.class,
			Processed:    v.p,
			Failed:       v.f,
			MS:           v.ms,
			Succeeded:    v.ok,
			HistogramKey: histogramKey(d, k.class, k.minute),
			Histogram:    v.hist[:],
			HistogramTTL: histogramTTL,
		}
		for _, b := range metricBuckets(d, k.minute) {
			m.Buckets = append(m.Buckets, rdb.MetricsBucket{Key: b.key, TTL: b.ttl})
		}
		out = append(out, m)
	}
	return out
}
