package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/otlptest"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/internal/servercmd"
	"github.com/pallarel/pallarel/internal/workercmd"
	"github.com/pallarel/pallarel/router"
)

// A SplitCsvJob whose payload carries a traceparent and tracestate (as
// OpenTelemetry's Ruby Sidekiq instrumentation stamps them) runs in a span
// of that trace, a child of that parent, and every row job it pushes (from
// its feeder) and the finalizer run in spans of the same trace, exported
// to an OTLP/HTTP receiver named by OTEL_EXPORTER_OTLP_ENDPOINT.
func TestWorkerContinuesJobTraces(t *testing.T) {
	t.Parallel()
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		parent  = "00f067aa0ba902b7"
		rows    = 30
	)
	otlp := otlptest.NewReceiver(t)
	db := redistest.New(t)
	vars := map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": t.TempDir(), "LAUNCHER": "none"}
	srv := e2etest.Start(t, servercmd.Run, vars)
	sub := e2etest.Submit(t, srv.URL, e2etest.CSV(rows), "text")

	// Stamp the queued SplitCsvJob as the instrumented Ruby client would.
	raw, err := redis.Bytes(db.Do(t, "RPOP", "queue:report"), nil)
	if err != nil {
		t.Fatalf("no SplitCsvJob queued: %v", err)
	}
	var payload map[string]any
	if err := json.Unmarshal(raw, &payload); err != nil {
		t.Fatal(err)
	}
	payload["traceparent"] = "00-" + traceID + "-" + parent + "-01"
	payload["tracestate"] = "rojo=00f067aa0ba902b7"
	stamped, _ := json.Marshal(payload)
	db.Do(t, "LPUSH", "queue:report", stamped)

	wvars := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.URL, "OTEL_SERVICE_NAME": "pallarel-test-worker"}
	for k, v := range vars {
		wvars[k] = v
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var out e2etest.Buffer
	go func() {
		done <- workercmd.Main(ctx, "test", []string{"-q", "report", "-q", router.QueueName(sub.Token), "-c", "3"}, lookup(wvars), &out, setup)
	}()
	if st := e2etest.WaitEnded(t, srv.URL, sub.Token, 2*time.Minute); st.State != "completed" {
		t.Fatalf("run %+v\n%s", st, out.String())
	}
	stop() // the worker flushes its spans as it exits
	if code := <-done; code != 0 {
		t.Fatalf("worker exit %d:\n%s", code, out.String())
	}

	spans := otlp.Wait(t, 30*time.Second, func(s []otlptest.Span) bool { return len(s) >= 2*rows+1 })
	byID := map[string]otlptest.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	var split *otlptest.Span
	rowSpans := 0
	for _, s := range spans {
		if s.Service != "pallarel-test-worker" {
			t.Fatalf("span %s of service %q", s.Name, s.Service)
		}
		if s.Kind == "SPAN_KIND_CONSUMER" && s.Attrs["messaging.sidekiq.job_class"] == "SplitCsvJob" {
			split = &s
		}
	}
	if split == nil || split.TraceID != traceID || split.ParentSpanID != parent || split.Name != "report process" {
		t.Fatalf("the SplitCsvJob span %+v: want trace %s, parent %s", split, traceID, parent)
	}
	for _, s := range spans {
		if s.Kind != "SPAN_KIND_CONSUMER" || s.Attrs["messaging.sidekiq.job_class"] != "Report::ProcessCsvRowJob" {
			continue
		}
		rowSpans++
		if s.TraceID != traceID {
			t.Fatalf("row job span %+v is not in trace %s", s, traceID)
		}
		// Its parent is the producer span of the push that stamped it.
		if p, ok := byID[s.ParentSpanID]; !ok || p.Kind != "SPAN_KIND_PRODUCER" || p.TraceID != traceID {
			t.Fatalf("row job span %+v: parent %+v, want a producer span of the trace", s, p)
		}
	}
	if rowSpans != rows {
		t.Fatalf("%d row job spans, want %d", rowSpans, rows)
	}
}

// Without OTLP settings nothing is exported and no job is stamped.
func TestWorkerTracingOffByDefault(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	vars := map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": t.TempDir(), "LAUNCHER": "none"}
	srv := e2etest.Start(t, servercmd.Run, vars)
	sub := e2etest.Submit(t, srv.URL, e2etest.CSV(5), "text")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan int, 1)
	var out e2etest.Buffer
	// Only the report queue: the row jobs stay queued for inspection.
	go func() { done <- workercmd.Main(ctx, "test", []string{"-q", "report"}, lookup(vars), &out, setup) }()
	queue := "queue:" + router.QueueName(sub.Token)
	deadline := time.Now().Add(time.Minute)
	for {
		n, _ := redis.Int(db.Do(t, "LLEN", queue), nil)
		if n >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rows not pushed:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	jobs, _ := redis.ByteSlices(db.Do(t, "LRANGE", queue, 0, -1), nil)
	for _, j := range jobs {
		var m map[string]any
		_ = json.Unmarshal(j, &m)
		if _, ok := m["traceparent"]; ok {
			t.Fatalf("a row job was stamped with tracing off: %s", j)
		}
	}
	stop()
	<-done
}
