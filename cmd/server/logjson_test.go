package main

import (
	"testing"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/redistest"
)

// With LOG_FORMAT=json every line the server writes to its log is a JSON
// object with slog's time, level and msg and its attributes as fields,
// from start through a run (the in-process workers' job lines too) to
// shutdown. The welcome text goes to stdout, apart from the log.
func TestServerJSONLogs(t *testing.T) {
	t.Parallel()
	env := map[string]string{"REDIS_URL": redistest.New(t).URL(), "DATA_DIR": t.TempDir(), "LOG_FORMAT": "json"}
	srv := e2etest.Start(t, Run, env, "-workers")
	sub := e2etest.Submit(t, srv.URL, e2etest.CSV(20), "text")
	if st := e2etest.WaitEnded(t, srv.URL, sub.Token, runTimeout); st.State != "completed" {
		t.Fatalf("run %+v", st)
	}
	if code := srv.Stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines := e2etest.JSONLogLines(t, srv.Stderr.String())
	up := e2etest.FindLog(lines, "upload accepted")
	if up == nil || up["level"] != "INFO" || up["token"] != sub.Token {
		t.Fatalf("no upload line with its token in %v", lines)
	}
	if e2etest.FindLog(lines, "shutting down") == nil {
		t.Fatalf("no shutdown line in %v", lines)
	}
}
