package main

import (
	"context"
	"testing"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/internal/workercmd"
)

// With LOG_FORMAT=json every line the worker writes is a JSON object with
// slog's time, level and msg and its attributes as fields, from start to
// exit; a bad LOG_FORMAT is refused with status 2.
func TestWorkerJSONLogs(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"REDIS_URL":  redistest.New(t).URL(),
		"DATA_DIR":   t.TempDir(),
		"LAUNCHER":   "none",
		"LOG_FORMAT": "json",
	}
	var stderr e2etest.Buffer
	code := workercmd.Main(context.Background(), "test", []string{"-q", "report-00000000000000aa", "--idle-timeout", "1s", "-t", "1"}, lookup(vars), &stderr, setup)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	lines := e2etest.JSONLogLines(t, stderr.String())
	started := e2etest.FindLog(lines, "started")
	if started == nil || started["level"] != "INFO" || started["identity"] == nil || started["concurrency"] != float64(5) {
		t.Fatalf("no started line with its attributes in %v", lines)
	}
	if e2etest.FindLog(lines, "stopped") == nil {
		t.Fatalf("no stopped line in %v", lines)
	}

	vars["LOG_FORMAT"] = "xml"
	stderr = e2etest.Buffer{}
	if code := workercmd.Main(context.Background(), "test", []string{"-q", "report"}, lookup(vars), &stderr, setup); code != 2 {
		t.Fatalf("LOG_FORMAT=xml: exit %d, want 2:\n%s", code, stderr.String())
	}

	// A configuration error is a JSON line too.
	vars["LOG_FORMAT"], vars["REDIS_URL"] = "json", "redis://:hunter2@[::1"
	stderr = e2etest.Buffer{}
	if code := workercmd.Main(context.Background(), "test", []string{"-q", "report"}, lookup(vars), &stderr, setup); code != 2 {
		t.Fatalf("bad REDIS_URL: exit %d, want 2", code)
	}
	if l := e2etest.JSONLogLines(t, stderr.String()); l[0]["level"] != "ERROR" || l[0]["err"] == nil {
		t.Fatalf("configuration error line %v", l)
	}
}
