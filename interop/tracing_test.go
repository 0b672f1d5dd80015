package interop

import (
	"context"
	"testing"
	"time"

	"github.com/pallarel/pallarel/internal/otlptest"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/internal/tracing"
	"github.com/pallarel/pallarel/sidekiq"
)

// A job Ruby Sidekiq 8.0.6 pushes with a traceparent (as OpenTelemetry's
// Ruby instrumentation stamps it) runs in Go in a span of that trace, a
// child of that parent; a job it pushes carries the same trace id and runs
// in a span of it. The spans reach an in-process OTLP/HTTP receiver.
func TestRubyTraceContinuedInGo(t *testing.T) {
	t.Parallel()
	const (
		traceID = "0af7651916cd43dd8448eb211c80319c"
		parent  = "b7ad6b7169203331"
	)
	otlp := otlptest.NewReceiver(t)
	tr, shutdown, err := tracing.Start(context.Background(), func(k string) (string, bool) {
		v, ok := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.URL, "OTEL_SERVICE_NAME": "interop"}[k]
		return v, ok
	}, "")
	if err != nil || tr == nil {
		t.Fatalf("tracing.Start: %v, %v", tr, err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	db := redistest.New(t)
	client := sidekiq.NewClient(db.Pool, sidekiq.ClientOptions{Middleware: []sidekiq.ClientMiddleware{tr.Client()}})
	childJob := make(chan *sidekiq.Job, 1)
	reg := sidekiq.NewRegistry()
	mustRegister(t, reg, func(ctx context.Context, j *sidekiq.Job) error {
		child, err := sidekiq.NewJob("Interop::ChildJob", "child")
		if err != nil {
			return err
		}
		child.Queue = "interop"
		_, err = client.Push(ctx, child)
		return err
	}, "Interop::TracedJob")
	mustRegister(t, reg, func(_ context.Context, j *sidekiq.Job) error { childJob <- j; return nil }, "Interop::ChildJob")
	startServer(t, db, reg, sidekiq.Options{Queues: []sidekiq.QueueWeight{{Name: "interop"}}, Concurrency: 2,
		ServerMiddleware: []sidekiq.ServerMiddleware{tr.Server()}})

	var res struct{ JID, Version string }
	rubyResult(t, "8", "testdata/traced.rb", &res, "REDIS_URL="+db.URL(),
		"TRACEPARENT=00-"+traceID+"-"+parent+"-01", "TRACESTATE=congo=t61rcWkgMzE")
	if res.Version != "8.0.6" {
		t.Fatalf("Ruby Sidekiq %s, want 8.0.6", res.Version)
	}
	var child *sidekiq.Job
	select {
	case child = <-childJob:
	case <-time.After(30 * time.Second):
		t.Fatal("the child job did not run")
	}
	if tp := child.StringField("traceparent"); len(tp) != 55 || tp[3:35] != traceID {
		t.Fatalf("the child job's traceparent %q is not in trace %s", tp, traceID)
	}
	if ts := child.StringField("tracestate"); ts != "congo=t61rcWkgMzE" {
		t.Fatalf("the child job's tracestate %q", ts)
	}
	// The child's own span ends after its handler returns: the batch
	// exporter sends it within its 5 s delay.
	spans := otlp.Wait(t, 30*time.Second, func(s []otlptest.Span) bool { return len(s) >= 3 })
	kinds := map[string]otlptest.Span{}
	for _, s := range spans {
		if s.TraceID != traceID {
			t.Fatalf("span %+v not in trace %s", s, traceID)
		}
		kinds[s.Attrs["messaging.sidekiq.job_class"]+" "+s.Kind] = s
	}
	traced, ok := kinds["Interop::TracedJob SPAN_KIND_CONSUMER"]
	if !ok || traced.ParentSpanID != parent || traced.Attrs["messaging.message.id"] != res.JID || traced.Name != "interop process" {
		t.Fatalf("the Ruby job's span %+v: want parent %s, jid %s", traced, parent, res.JID)
	}
	push, ok := kinds["Interop::ChildJob SPAN_KIND_PRODUCER"]
	if !ok || push.ParentSpanID != traced.SpanID {
		t.Fatalf("the child push span %+v: want a child of %s", push, traced.SpanID)
	}
	if run, ok := kinds["Interop::ChildJob SPAN_KIND_CONSUMER"]; !ok || run.ParentSpanID != push.SpanID {
		t.Fatalf("the child job's span %+v: want a child of the push %s", run, push.SpanID)
	}
}
