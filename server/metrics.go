package server

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxRunSeries caps how many unfinished runs get per-token series, so a
// backlog cannot blow up the scrape.
const maxRunSeries = 200

// httpMetrics counts and times requests by route (gin's pattern, never the
// raw path, so tokens do not become label values) and status.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg *prometheus.Registry) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pallarel_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pallarel_http_request_duration_seconds", Help: "HTTP request duration by route, method and status.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method", "status"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *httpMetrics) middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		status := strconv.Itoa(c.Writer.Status())
		m.requests.WithLabelValues(route, c.Request.Method, status).Inc()
		m.duration.WithLabelValues(route, c.Request.Method, status).Observe(time.Since(start).Seconds())
	}
}

// metricsHandler serves this Server's registry. A failed Redis or database
// read shows as pallarel_scrape_ok 0, not as a failed scrape.
func (s *Server) metricsHandler() gin.HandlerFunc {
	h := promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return gin.WrapH(h)
}

// sidekiqCollector reads Sidekiq's numbers and unfinished runs at scrape time.
type sidekiqCollector struct{ s *Server }

var (
	descQueueSize    = prometheus.NewDesc("sidekiq_queue_size", "Jobs waiting in a queue.", []string{"queue"}, nil)
	descQueueLatency = prometheus.NewDesc("sidekiq_queue_latency_seconds", "Age of the oldest job in a queue.", []string{"queue"}, nil)
	descProcessed    = prometheus.NewDesc("sidekiq_processed_total", "Jobs processed (stat:processed).", nil, nil)
	descFailed       = prometheus.NewDesc("sidekiq_failed_total", "Jobs failed (stat:failed).", nil, nil)
	descProcesses    = prometheus.NewDesc("sidekiq_processes", "Live Sidekiq processes.", nil, nil)
	descBusy         = prometheus.NewDesc("sidekiq_busy", "Jobs running now.", nil, nil)
	descEnqueued     = prometheus.NewDesc("sidekiq_enqueued", "Jobs waiting in all queues.", nil, nil)
	descSetSize      = prometheus.NewDesc("sidekiq_set_size", "Entries in the retry, schedule and dead sets.", []string{"set"}, nil)
	descRunRows      = prometheus.NewDesc("pallarel_run_rows", "Rows of an unfinished run by kind (done, failed, total).", []string{"token", "queue", "kind"}, nil)
	descScrapeOK     = prometheus.NewDesc("pallarel_scrape_ok", "1 when the last scrape read its source, by source.", []string{"source"}, nil)
)

func (sc *sidekiqCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueSize, descQueueLatency, descProcessed, descFailed, descProcesses,
		descBusy, descEnqueued, descSetSize, descRunRows, descScrapeOK} {
		ch <- d
	}
}

func (sc *sidekiqCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ok := func(source string, err error) {
		v := 1.0
		if err != nil {
			v = 0
			sc.s.log.Warn("metrics scrape", "source", source, "err", err)
		}
		ch <- prometheus.MustNewConstMetric(descScrapeOK, prometheus.GaugeValue, v, source)
	}
	ok("redis", sc.collectSidekiq(ctx, ch))
	ok("database", sc.collectRuns(ctx, ch))
}

func (sc *sidekiqCollector) collectSidekiq(ctx context.Context, ch chan<- prometheus.Metric) error {
	api := sc.s.d.API
	qs, err := api.Queues(ctx)
	if err != nil {
		return err
	}
	for _, q := range qs {
		ch <- prometheus.MustNewConstMetric(descQueueSize, prometheus.GaugeValue, float64(q.Size), q.Name)
		ch <- prometheus.MustNewConstMetric(descQueueLatency, prometheus.GaugeValue, q.Latency, q.Name)
	}
	st, err := api.Stats(ctx)
	if err != nil {
		return err
	}
	ch <- prometheus.MustNewConstMetric(descProcessed, prometheus.CounterValue, float64(st.Processed))
	ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(st.Failed))
	ch <- prometheus.MustNewConstMetric(descProcesses, prometheus.GaugeValue, float64(st.Processes))
	ch <- prometheus.MustNewConstMetric(descBusy, prometheus.GaugeValue, float64(st.Workers))
	ch <- prometheus.MustNewConstMetric(descEnqueued, prometheus.GaugeValue, float64(st.Enqueued))
	ch <- prometheus.MustNewConstMetric(descSetSize, prometheus.GaugeValue, float64(st.Retries), "retry")
	ch <- prometheus.MustNewConstMetric(descSetSize, prometheus.GaugeValue, float64(st.Scheduled), "schedule")
	ch <- prometheus.MustNewConstMetric(descSetSize, prometheus.GaugeValue, float64(st.Dead), "dead")
	return nil
}

func (sc *sidekiqCollector) collectRuns(ctx context.Context, ch chan<- prometheus.Metric) error {
	rows, err := sc.s.d.DB.OpenStatuses(ctx, maxRunSeries)
	if err != nil {
		return err
	}
	for _, r := range rows {
		for _, kv := range []struct {
			kind string
			n    int
		}{{"done", r.DoneCount}, {"failed", r.FailedCount}, {"total", r.TotalCount}} {
			ch <- prometheus.MustNewConstMetric(descRunRows, prometheus.GaugeValue, float64(kv.n), r.Token, r.QueueName, kv.kind)
		}
	}
	return nil
}
