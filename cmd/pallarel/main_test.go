package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/internal/servercmd"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	os.Exit(m.Run())
}

// startServer runs cmd/server's Run in this process on real Redis with
// in-process workers, SQLite and local storage in a temp dir.
func startServer(t *testing.T) *e2etest.Server {
	t.Helper()
	db := redistest.New(t)
	return e2etest.Start(t, servercmd.Run, map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": t.TempDir()}, "-workers")
}

// TestRunSubmitsFollowsAndDownloads: the CLI uploads a CSV, draws its
// progress on stderr and writes the report ZIP to -o.
func TestRunSubmitsFollowsAndDownloads(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "一覧.csv"), filepath.Join(dir, "out", "report.zip")
	if err := os.WriteFile(in, e2etest.CSV(30), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-server", srv.URL + "/", "-type", "text", "-poll", "100ms", "-o", out, in}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "submitted "+in+" as ") || !strings.Contains(stderr.String(), "(queue report-") {
		t.Errorf("stderr does not tell the submission:\n%s", stderr.String())
	}
	// Not a terminal: the progress is plain lines on stderr, never \r
	// frames, and never on stdout; the last says how the run ended.
	if !strings.Contains(stderr.String(), "completed: 30 done, 0 failed of 30 (100.0%), took ") || strings.Contains(stderr.String(), "\r") {
		t.Errorf("progress on stderr:\n%q", stderr.String())
	}
	if want := out + ": "; !strings.HasPrefix(stdout.String(), want) || !strings.Contains(stdout.String(), "30 rows done, 0 failed") {
		t.Errorf("stdout %q", stdout.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	e2etest.CheckTextReport(t, e2etest.ReadZip(t, data), 30)
	if _, err := os.Stat(out + ".part"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s.part left behind: %v", out, err)
	}
}

// TestRunReportsServerErrors: a file the server refuses fails the run with
// the server's own message, and writes no ZIP.
func TestRunReportsServerErrors(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "photo.csv"), filepath.Join(dir, "report.zip")
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0, 1, 2, 3}, 64)...)
	if err := os.WriteFile(in, png, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-server", srv.URL, "-o", out, in}, &stdout, &stderr)
	if err == nil {
		t.Fatal("run succeeded on a PNG")
	}
	// 415 with the server's message, in English (the CLI asks for no
	// language) and without the JSON around it.
	if msg := err.Error(); !strings.Contains(msg, "415") || !strings.Contains(msg, ": This does not look like a CSV file.") || strings.Contains(msg, "{") {
		t.Errorf("error %q does not carry the server's message", msg)
	}
	var u usageError
	if errors.As(err, &u) {
		t.Errorf("a server refusal is not a usage error: %v", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s written after a failed run: %v", out, err)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q", stdout.String())
	}

	if exitCode(err) != exitRequest {
		t.Errorf("exit status %d for a refused upload, want %d", exitCode(err), exitRequest)
	}
	// A file that does not exist fails before any request.
	err = run(t.Context(), []string{"-server", srv.URL, filepath.Join(dir, "missing.csv")}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "missing.csv") || exitCode(err) != exitUsage {
		t.Errorf("missing file: %v", err)
	}
	// A header-only CSV is refused at the door, with the reason.
	hdr := filepath.Join(dir, "header.csv")
	if err := os.WriteFile(hdr, []byte("id,name\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = run(t.Context(), []string{"-server", srv.URL, hdr}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "422") || !strings.Contains(err.Error(), "no data rows") {
		t.Errorf("header-only CSV: %v", err)
	}
}

// TestRunUsage: bad command lines are usageErrors (exit status 2).
func TestRunUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		nil,
		{"a.csv", "b.csv"},
		{"-nope", "a.csv"},
		{"-poll", "soon", "a.csv"},
		{"-poll", "0s", "status", "x"},
		// Flags are checked before anything is uploaded (no server runs here).
		{"-type", "docx", "main_test.go"},
		{"-encoding", "latin1", "main_test.go"},
		{"-type", "pdf", "-template", "main_test.go", "main_test.go"},
		{"-template", "missing.xlsx", "main_test.go"},
		{"-webhook", "ftp://x/y", "main_test.go"},
		{"missing.csv"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), args, &stdout, &stderr)
		var u usageError
		if !errors.As(err, &u) || exitCode(err) != exitUsage {
			t.Errorf("run %q: %v, want a usageError", args, err)
		}
	}
}

// TestHelp: -h exits 0 and documents the file argument, the types the
// server takes (no csv) and what Ctrl-C does.
func TestHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"-h"}, &stdout, &stderr); err != nil {
		t.Fatalf("-h: %v", err)
	}
	help := stderr.String()
	for _, want := range []string{"Usage: pallarel [flags] FILE.csv", "pallarel [flags] COMMAND TOKEN", "-type", "xlsx, pdf or text", "-server", "-token", "Ctrl-C",
		"  status TOKEN", "  cancel TOKEN", "  retry TOKEN", "  failed TOKEN", "-page", "pallarel status 0b6d", "Exit status:", "1  some rows failed", "3  the run failed or was cancelled"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "text or csv") || strings.Contains(help, "text, csv") {
		t.Errorf("help offers -type csv, which the server refuses:\n%s", help)
	}
}

// TestInterruptSaysRunGoesOn: Ctrl-C while following tells the run goes
// on and where to fetch it.
func TestInterruptSaysRunGoesOn(t *testing.T) {
	t.Parallel()
	srv := startServerNoWorkers(t)
	in := filepath.Join(t.TempDir(), "a.csv")
	if err := os.WriteFile(in, e2etest.CSV(3), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr bytes.Buffer
	w := &cancelOnWrite{w: &stderr, marker: "submitted ", cancel: cancel}
	err := run(ctx, []string{"-server", srv.URL, "-poll", "50ms", in}, &stdout, w)
	if err == nil || !strings.Contains(err.Error(), "goes on on the server") || !strings.Contains(err.Error(), "/download") {
		t.Fatalf("interrupted run: %v", err)
	}
}

// startServerNoWorkers runs a server whose runs never start (no workers).
func startServerNoWorkers(t *testing.T) *e2etest.Server {
	t.Helper()
	db := redistest.New(t)
	return e2etest.Start(t, servercmd.Run, map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": t.TempDir(), "LAUNCHER": "none"})
}

// cancelOnWrite cancels once marker is written (the submission line).
type cancelOnWrite struct {
	w      *bytes.Buffer
	marker string
	cancel context.CancelFunc
}

func (c *cancelOnWrite) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.marker) {
		c.cancel()
	}
	return c.w.Write(p)
}

// TestHelpHidesToken: -h does not print AUTH_TOKEN as the -token default.
// (Not parallel: it sets the environment.)
func TestHelpHidesToken(t *testing.T) {
	t.Setenv("AUTH_TOKEN", "s3cret-bearer")
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"-h"}, &stdout, &stderr); err != nil {
		t.Fatalf("-h: %v", err)
	}
	if help := stderr.String(); strings.Contains(help, "s3cret-bearer") || !strings.Contains(help, "env AUTH_TOKEN") {
		t.Errorf("help:\n%s", help)
	}
}
