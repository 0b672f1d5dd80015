// Package otelsidekiq continues OpenTelemetry traces through Sidekiq jobs,
// as OpenTelemetry's Ruby Sidekiq instrumentation carries them: the W3C
// trace context (traceparent, tracestate) as top-level keys of the job
// payload (the instrumentation's client middleware calls
// OpenTelemetry.propagation.inject(job)). The server middleware starts
// each job's consumer span as a child of the context its payload carries;
// the client middleware starts a producer span for each push and stamps
// its context on the pushed job, so jobs a job pushes stay in its trace.
//
// It is middleware: with tracing off, nothing of it is in the chain and
// the job path costs nothing.
package otelsidekiq

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pallarel/pallarel/sidekiq"
)

// ScopeName is the instrumentation scope of the spans.
const ScopeName = "github.com/pallarel/pallarel/sidekiq/otelsidekiq"

// Tracing makes the middleware from a tracer provider.
type Tracing struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// New traces with tp, propagating W3C trace context.
func New(tp trace.TracerProvider) *Tracing {
	return &Tracing{tracer: tp.Tracer(ScopeName), prop: propagation.TraceContext{}}
}

// Server is the server middleware: a consumer span "<queue> process" for
// each job, a child of the job's traceparent when it has one. A job whose
// handler fails records the error on its span.
func (t *Tracing) Server() sidekiq.ServerMiddleware {
	return func(ctx context.Context, job *sidekiq.Job, next func(context.Context) error) error {
		ctx = t.prop.Extract(ctx, carrier{job})
		ctx, span := t.tracer.Start(ctx, job.Queue+" process",
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs(job)...))
		defer span.End()
		err := next(ctx)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		return err
	}
}

// Client is the client middleware: a producer span "<queue> publish" for
// each push made with a traced context, its context stamped on the job.
// A push from an untraced context (no span in ctx) is left as it is, so a
// job Ruby traced and Go re-pushes (a retry) keeps its own traceparent.
func (t *Tracing) Client() sidekiq.ClientMiddleware {
	return func(ctx context.Context, job *sidekiq.Job) error {
		if !trace.SpanContextFromContext(ctx).IsValid() {
			return nil
		}
		ctx, span := t.tracer.Start(ctx, job.Queue+" publish",
			trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs(job)...))
		defer span.End()
		t.prop.Inject(ctx, carrier{job})
		return nil
	}
}

// attrs are the Ruby instrumentation's messaging attributes.
func attrs(job *sidekiq.Job) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("messaging.system", "sidekiq"),
		attribute.String("messaging.destination.name", job.Queue),
		attribute.String("messaging.message.id", job.JID),
		attribute.String("messaging.sidekiq.job_class", job.DisplayClass()),
	}
}

// carrier reads and writes trace context keys at the payload's top level.
type carrier struct{ job *sidekiq.Job }

func (c carrier) Get(key string) string { return c.job.StringField(key) }

func (c carrier) Set(key, value string) { _ = c.job.SetField(key, value) }

func (c carrier) Keys() []string {
	keys := make([]string, 0, len(c.job.Fields))
	for k := range c.job.Fields {
		keys = append(keys, k)
	}
	return keys
}
