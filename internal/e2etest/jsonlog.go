package e2etest

import (
	"encoding/json"
	"strings"
	"testing"
)

// JSONLogLines parses every line of a binary's LOG_FORMAT=json output as a
// JSON object, failing the test on a line that is not one or lacks slog's
// time, level and msg.
func JSONLogLines(t testing.TB, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON (%v): %q", err, line)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := m[k]; !ok {
				t.Fatalf("log line has no %q: %q", k, line)
			}
		}
		lines = append(lines, m)
	}
	return lines
}

// FindLog is the first line whose msg is msg, or nil.
func FindLog(lines []map[string]any, msg string) map[string]any {
	for _, l := range lines {
		if l["msg"] == msg {
			return l
		}
	}
	return nil
}
