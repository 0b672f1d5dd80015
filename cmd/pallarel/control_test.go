package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/internal/servercmd"
)

var submittedRE = regexp.MustCompile(`submitted .* as ([0-9a-f-]{36}) `)

// TestFailedStatusRetry: a run with a row the CSV cannot parse completes
// with it failed; the CLI lists it, shows the run, retries it (the row
// fails again: the CSV is what it is) and downloads the new ZIP.
func TestFailedStatusRetry(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "a.csv"), filepath.Join(dir, "a.zip")
	if err := os.WriteFile(in, append(e2etest.CSV(30), "\"A-99999,unterminated\r\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	// A failed row: the ZIP is written and the exit status is 1.
	if err := run(t.Context(), []string{"-server", srv.URL, "-type", "text", "-poll", "100ms", "-o", out, in}, &stdout, &stderr); exitCode(err) != exitRowsFailed {
		t.Fatalf("run: %v (exit %d, want 1)\n%s", err, exitCode(err), stderr.String())
	}
	m := submittedRE.FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no token in %q", stderr.String())
	}
	token := m[1]
	if !strings.Contains(stdout.String(), "30 rows done, 1 failed") {
		t.Fatalf("stdout %q", stdout.String())
	}
	cmd := func(args ...string) (string, error) {
		t.Helper()
		stdout.Reset()
		stderr.Reset()
		err := run(t.Context(), append([]string{"-server", srv.URL, "-poll", "100ms", "-o", out}, args...), &stdout, &stderr)
		return stdout.String(), err
	}
	got, err := cmd("failed", token)
	if err != nil || !strings.HasPrefix(got, "31\tline 32") || strings.Count(got, "\n") != 1 {
		t.Fatalf("failed: %q, %v", got, err)
	}
	got, err = cmd("status", token)
	if exitCode(err) != exitRowsFailed || !strings.HasPrefix(got, token+": completed, 30 done, 1 failed of 31, took ") || !strings.Contains(got, " rows/s") {
		t.Fatalf("status: %q, %v", got, err)
	}
	// The only failed row cannot be parsed: nothing to retry, the run and
	// its ZIP stay as they are.
	os.Remove(out)
	got, err = cmd("retry", token)
	if exitCode(err) != exitRowsFailed || !strings.Contains(stderr.String(), token+": nothing to retry: Nothing to retry") || got != "" {
		t.Fatalf("retry: %q, %v\n%s", got, err, stderr.String())
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a ZIP was downloaded for a retry that did nothing")
	}
	if got, _ = cmd("status", token); !strings.HasPrefix(got, token+": completed, 30 done, 1 failed of 31") {
		t.Fatalf("status after the refused retry: %q", got)
	}
	if _, err := cmd("cancel", token); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("cancel of a completed run: %v", err)
	}
}

// TestCancel: a run that no worker has taken yet is cancelled by the CLI.
func TestCancel(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	srv := e2etest.Start(t, servercmd.Run, map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": t.TempDir(), "LAUNCHER": "none"})
	in := filepath.Join(t.TempDir(), "a.csv")
	if err := os.WriteFile(in, e2etest.CSV(5), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &client{base: srv.URL, http: &http.Client{}}
	sub, err := c.submit(t.Context(), in, options{typ: "text", webhook: "https://rails.example/hook"})
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"-server", srv.URL, "cancel", sub.Token}, &stdout, &stderr); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if stdout.String() != sub.Token+": cancelled\n" {
		t.Errorf("stdout %q", stdout.String())
	}
	stdout.Reset()
	if err := run(t.Context(), []string{"-server", srv.URL, "status", sub.Token}, &stdout, &stderr); exitCode(err) != exitRunEnded ||
		!strings.HasPrefix(stdout.String(), sub.Token+": cancelled (cancelled by user)") {
		t.Errorf("status: %q, %v", stdout.String(), err)
	}
	if err := run(t.Context(), []string{"-server", srv.URL, "cancel", sub.Token}, &stdout, &stderr); err == nil {
		t.Error("a second cancel succeeded")
	}
	if err := run(t.Context(), []string{"-server", srv.URL, "cancel", "not-a-token"}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("bad token: %v", err)
	}
}
