package server

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq"
)

func TestHealth(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	resp, body := b.get(t, "/up")
	wantStatus(t, resp, body, http.StatusOK)
	if body != "OK" {
		t.Errorf("/up = %q", body)
	}
	resp, body = b.get(t, "/healthz")
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = b.get(t, "/readyz")
	wantStatus(t, resp, body, http.StatusOK)
	if !strings.Contains(body, "redis: ok") || !strings.Contains(body, "database: ok") {
		t.Errorf("/readyz = %q", body)
	}
}

// TestReadyzRedisDown points the server at a port nobody listens on.
func TestReadyzRedisDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dead := &redis.Pool{DialContext: func(ctx context.Context) (redis.Conn, error) {
		return redis.DialContext(ctx, "tcp", addr, redis.DialConnectTimeout(time.Second))
	}}
	b := setup(t, func(d *Deps) {
		d.Pool = dead
		d.Client = sidekiq.NewClient(dead, sidekiq.ClientOptions{})
		d.API = sidekiq.NewAPI(dead, sidekiq.Dialect8)
	})
	resp, body := b.get(t, "/readyz")
	wantStatus(t, resp, body, http.StatusServiceUnavailable)
	if !strings.Contains(body, "redis: fail") || !strings.Contains(body, "database: ok") {
		t.Errorf("/readyz = %q", body)
	}
	resp, body = b.get(t, "/readyz", "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusServiceUnavailable)
	var v map[string]string
	decode(t, body, &v)
	if v["redis"] != "fail" || v["database"] != "ok" {
		t.Errorf("/readyz JSON = %v", v)
	}
	// Liveness does not depend on Redis; metrics still answer and say so.
	resp, body = b.get(t, "/healthz")
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = b.get(t, "/metrics")
	wantStatus(t, resp, body, http.StatusOK)
	if !strings.Contains(body, `pallarel_scrape_ok{source="redis"} 0`) {
		t.Errorf("metrics do not report the Redis failure")
	}
	// An upload cannot be enqueued: 503, and the report says why.
	bodyR, ctype := multipartBody(t, part{name: "csv_file", file: "a.csv", value: sampleCSV})
	resp, out := b.do(t, http.MethodPost, "/csv_processing", bodyR, "Content-Type", ctype, "Accept", "application/json")
	wantStatus(t, resp, out, http.StatusServiceUnavailable)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	j, _ := sidekiq.NewJob("Report::ProcessCsvRowJob", map[string]string{"a": "1"})
	j.Queue = "report-0123456789abcdef"
	if _, err := b.srv.d.Client.Push(ctx, j); err != nil {
		t.Fatal(err)
	}
	b.redis.Do(t, "SET", "stat:processed", 42)
	token, _ := newRun(t, b, true)
	if err := b.db.IncrementDone(ctx, token, 3); err != nil {
		t.Fatal(err)
	}
	b.get(t, "/csv_processing/status") // counted by the HTTP metrics
	resp, body := b.get(t, "/metrics")
	wantStatus(t, resp, body, http.StatusOK)
	for _, want := range []string{
		`sidekiq_queue_size{queue="report-0123456789abcdef"} 1`,
		`sidekiq_queue_latency_seconds{queue="report-0123456789abcdef"}`,
		`sidekiq_processed_total 42`,
		`sidekiq_set_size{set="dead"} 0`,
		`sidekiq_processes 0`,
		`pallarel_run_rows{kind="done",queue=`,
		`token="` + token + `"} 3`,
		`pallarel_http_requests_total{method="GET",route="/csv_processing/status",status="200"} 1`,
		`pallarel_http_request_duration_seconds_bucket{method="GET",route="/csv_processing/status",status="200"`,
		`pallarel_scrape_ok{source="redis"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *Deps) { d.AuthToken, d.BasicUser, d.BasicPassword = "s3cret", "admin", "pw" })
	for _, path := range []string{"/", "/csv_processing/status", "/csv_processing/" + "00000000-0000-4000-8000-000000000000", "/sidekiq", "/sidekiq/busy"} {
		resp, body := b.get(t, path)
		wantStatus(t, resp, body, http.StatusUnauthorized)
		if h := resp.Header.Values("WWW-Authenticate"); len(h) != 2 || !strings.HasPrefix(h[0], "Basic") {
			t.Errorf("%s: WWW-Authenticate = %q", path, h)
		}
	}
	resp, body := b.do(t, http.MethodPost, "/csv_processing", strings.NewReader(""), "Content-Type", "multipart/form-data; boundary=x")
	wantStatus(t, resp, body, http.StatusUnauthorized)
	resp, body = b.get(t, "/csv_processing/status", "Authorization", "Bearer wrong")
	wantStatus(t, resp, body, http.StatusUnauthorized)
	resp, body = b.get(t, "/csv_processing/status", "Authorization", "Bearer s3cret")
	wantStatus(t, resp, body, http.StatusOK)
	req, _ := http.NewRequest(http.MethodGet, b.ts.URL+"/sidekiq", nil)
	req.SetBasicAuth("admin", "pw")
	r2, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusOK {
		t.Errorf("basic auth: %d", r2.StatusCode)
	}
	for _, path := range []string{"/up", "/healthz", "/readyz"} {
		resp, body := b.get(t, path)
		wantStatus(t, resp, body, http.StatusOK)
	}
	// Metrics name queues and count runs: behind the same auth.
	resp, body = b.get(t, "/metrics")
	wantStatus(t, resp, body, http.StatusUnauthorized)
	resp, body = b.get(t, "/metrics", "Authorization", "Bearer s3cret")
	wantStatus(t, resp, body, http.StatusOK)

	// Off by default.
	open := setup(t, nil)
	resp, body = open.get(t, "/csv_processing/status")
	wantStatus(t, resp, body, http.StatusOK)
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	_, err := New(Deps{BasicUser: "x"})
	if err == nil {
		t.Fatal("New with no dependencies succeeded")
	}
	for _, want := range []string{"redis pool", "sidekiq client", "database", "storage", "basic auth"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	b := setup(t, func(d *Deps) { d.ReadTimeout = time.Hour })
	hs := b.srv.HTTPServer(":0")
	if hs.ReadTimeout != time.Hour || hs.ReadHeaderTimeout == 0 || hs.WriteTimeout != 0 || hs.IdleTimeout == 0 || hs.Handler == nil {
		t.Errorf("HTTPServer = %+v", hs)
	}
}
