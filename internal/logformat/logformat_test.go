package logformat

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"

	"github.com/pallarel/pallarel/internal/e2etest"
)

func TestFormats(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want Format
		bad  bool
	}{{"", Text, false}, {"text", Text, false}, {" JSON ", JSON, false}, {"logfmt", Text, true}} {
		f, err := Parse(func(string) (string, bool) { return tc.env, tc.env != "" })
		if f != tc.want || (err != nil) != tc.bad {
			t.Errorf("LOG_FORMAT=%q: %q, %v", tc.env, f, err)
		}
	}
	var b bytes.Buffer
	log := New(&b, JSON, slog.LevelInfo)
	log.Info("done", "jid", "abc", "elapsed", 0.5)
	log.Debug("hidden")
	Problem(&b, JSON, log, "worker: configuration", errors.New("REDIS_URL: bad port"))
	lines := e2etest.JSONLogLines(t, b.String())
	if len(lines) != 2 || lines[0]["msg"] != "done" || lines[0]["jid"] != "abc" || lines[0]["elapsed"] != 0.5 || lines[0]["level"] != "INFO" {
		t.Fatalf("lines %v", lines)
	}
	if lines[1]["level"] != "ERROR" || lines[1]["err"] != "REDIS_URL: bad port" {
		t.Fatalf("problem line %v", lines[1])
	}
	b.Reset()
	Problem(&b, Text, New(&b, Text, slog.LevelInfo), "worker: configuration", errors.New("REDIS_URL: bad port"))
	if b.String() != "worker: configuration:\nREDIS_URL: bad port\n" {
		t.Fatalf("text problem %q", b.String())
	}
}
