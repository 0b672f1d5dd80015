package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pallarel/pallarel/router"
)

// TestDashboardTimesAndRSS: the sets show when, not the raw sorted-set
// key; the Busy page counts RSS once per OS process, however many Sidekiq
// identities it runs (an all-in-one server runs one per token queue).
func TestDashboardTimesAndRSS(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	_, keys := seedSidekiq(t, b)
	for _, p := range []struct {
		identity string
		pid, rss int
	}{{"worker-host:4242:feed0001", 4242, 123456}, {"worker-host:4343:feed0002", 4343, 1000}} {
		info := `{"hostname":"worker-host","started_at":1700000000.5,"pid":` + itoa(int64(p.pid)) + `,"concurrency":5,"queues":["default"],"labels":[],"identity":"` + p.identity + `","version":"8.0.6"}`
		b.redis.Do(t, "SADD", "processes", p.identity)
		b.redis.Do(t, "HSET", p.identity, "info", info, "busy", 0, "beat", float64(time.Now().Unix()), "quiet", "false", "rss", p.rss)
	}
	resp, body := b.get(t, "/sidekiq/busy")
	wantStatus(t, resp, body, http.StatusOK)
	if !strings.Contains(body, `RSS (KB)<b>124456</b>`) {
		t.Errorf("busy summary: want RSS 124456 (123456 once for pid 4242, 1000 for pid 4343): %.1500s", body)
	}
	for set, path := range map[string]string{"retry": "/sidekiq/retries", "schedule": "/sidekiq/scheduled", "dead": "/sidekiq/morgue"} {
		resp, body := b.get(t, path)
		wantStatus(t, resp, body, http.StatusOK)
		if strings.Contains(body, "<code>"+keys[set]+"</code>") || strings.Contains(body, ">"+keys[set]+"<") {
			t.Errorf("%s prints the raw key %s", path, keys[set])
		}
	}
}

// TestExpiredRunPage: a token nothing knows (most often a run retention
// removed) gets a page that says runs expire, and after how long.
func TestExpiredRunPage(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *Deps) { d.RetainRuns = 90 * 24 * time.Hour })
	token := router.NewToken()
	resp, body := b.get(t, "/csv_processing/"+token, "Accept-Language", "en")
	wantStatus(t, resp, body, http.StatusNotFound)
	if !strings.Contains(body, "Ended runs are removed once RETAIN_RUNS has passed. (RETAIN_RUNS=90d)") {
		t.Errorf("expired run page: %.1500s", body)
	}
	resp, body = b.get(t, "/csv_processing/"+token, "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusNotFound)
	if !strings.Contains(body, "RETAIN_RUNS=90d") {
		t.Errorf("expired run JSON: %s", body)
	}
}
