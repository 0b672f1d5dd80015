package tracing

import (
	"context"
	"testing"
)

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want Settings
		on   bool
		bad  bool
	}{
		{"nothing set: off", nil, Settings{}, false, false},
		{"base endpoint gets the traces path", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"},
			Settings{Exporter: "otlp", Endpoint: "http://collector:4318/v1/traces", Protocol: "http/protobuf", Service: "svc"}, true, false},
		{"traces endpoint as given, service named", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://b/custom", "OTEL_SERVICE_NAME": "worker-x"},
			Settings{Exporter: "otlp", Endpoint: "https://b/custom", Protocol: "http/protobuf", Service: "worker-x"}, true, false},
		{"grpc keeps the base", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			Settings{Exporter: "otlp", Endpoint: "http://collector:4317", Protocol: "grpc", Service: "svc"}, true, false},
		{"exporter otlp without endpoint: the exporter's default", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"},
			Settings{Exporter: "otlp", Protocol: "http/protobuf", Service: "svc"}, true, false},
		{"exporter none wins", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318"}, Settings{}, false, false},
		{"SDK disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318"}, Settings{}, false, false},
		{"unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, Settings{}, false, true},
		{"unknown protocol", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, Settings{}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, on, err := Read(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }, "svc")
			if (err != nil) != tc.bad || on != tc.on || (on && s != tc.want) {
				t.Fatalf("Read = %+v, %v, %v; want %+v, %v, error %v", s, on, err, tc.want, tc.on, tc.bad)
			}
		})
	}
	// Off: no middleware, and a shutdown that does nothing.
	tr, shutdown, err := Start(context.Background(), func(string) (string, bool) { return "", false }, "svc")
	if err != nil || tr != nil || shutdown(context.Background()) != nil {
		t.Fatalf("Start with nothing set: %v, %v", tr, err)
	}
}
