// Package tracing turns OpenTelemetry tracing on from the OTel-standard
// settings, for the binaries: off unless an OTLP endpoint or
// OTEL_TRACES_EXPORTER=otlp is set.
package tracing

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/pallarel/pallarel/sidekiq/otelsidekiq"
)

// Settings are the OpenTelemetry environment variables read through a
// lookup (the exporters also read the rest of OTEL_EXPORTER_OTLP_*, such as
// headers, timeouts and certificates, from the process environment).
type Settings struct {
	Exporter string // OTEL_TRACES_EXPORTER: otlp or none
	Endpoint string // the traces URL: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT's
	Protocol string // http/protobuf (default) or grpc
	Service  string // OTEL_SERVICE_NAME
}

// Read reads the settings; ok is false when tracing is off.
func Read(lookup func(string) (string, bool), defaultService string) (s Settings, ok bool, err error) {
	get := func(k string) string { v, _ := lookup(k); return strings.TrimSpace(v) }
	if strings.EqualFold(get("OTEL_SDK_DISABLED"), "true") {
		return s, false, nil
	}
	s.Protocol = strings.ToLower(firstOf(get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), get("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf"))
	switch s.Protocol {
	case "http/protobuf", "grpc":
	default:
		return s, false, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: want http/protobuf or grpc", s.Protocol)
	}
	s.Endpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if base := strings.TrimRight(get("OTEL_EXPORTER_OTLP_ENDPOINT"), "/"); s.Endpoint == "" && base != "" {
		s.Endpoint = base
		if s.Protocol == "http/protobuf" {
			s.Endpoint += "/v1/traces" // the spec's per-signal path on the base URL
		}
	}
	s.Exporter = strings.ToLower(get("OTEL_TRACES_EXPORTER"))
	switch s.Exporter {
	case "":
		if s.Endpoint == "" {
			return s, false, nil
		}
		s.Exporter = "otlp"
	case "none":
		return s, false, nil
	case "otlp":
	default:
		return s, false, fmt.Errorf("OTEL_TRACES_EXPORTER %q: want otlp or none", s.Exporter)
	}
	s.Service = firstOf(get("OTEL_SERVICE_NAME"), defaultService)
	return s, true, nil
}

// Start builds the tracer provider and the Sidekiq middleware, or returns
// nil ones when tracing is off. shutdown flushes the spans still batched.
func Start(ctx context.Context, lookup func(string) (string, bool), defaultService string) (t *otelsidekiq.Tracing, shutdown func(context.Context) error, err error) {
	s, ok, err := Read(lookup, defaultService)
	if err != nil || !ok {
		return nil, func(context.Context) error { return nil }, err
	}
	var exp sdktrace.SpanExporter
	switch s.Protocol {
	case "grpc":
		var opts []otlptracegrpc.Option
		if s.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(s.Endpoint))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	default:
		var opts []otlptracehttp.Option
		if s.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(s.Endpoint))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", s.Service)))
	if err != nil {
		return nil, nil, fmt.Errorf("OpenTelemetry resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return otelsidekiq.New(tp), tp.Shutdown, nil
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
