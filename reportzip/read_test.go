package reportzip

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// An archive read back, from a file in place and from a stream, gives the
// manifest lines the Writer wrote, in order, with every status spelled.
func TestReadManifestBack(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if _, err := w.Add("0000001-a.txt", strings.NewReader("a"), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	want := []ManifestEntry{
		{Row: 1, File: "0000001-a.txt", Status: StatusDone},
		{Row: 2, Status: StatusFailed, Error: "bad, \"quoted\"\nline"},
		{Row: 3, Error: "status left to the error"},
	}
	if err := w.AddManifest(want); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want[2].Status = StatusFailed
	path := filepath.Join(t.TempDir(), "r.zip")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, rc := range map[string]io.ReadCloser{"file": f, "stream": io.NopCloser(bytes.NewReader(buf.Bytes()))} {
		a, err := Read(rc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var got []ManifestEntry
		if err := a.EachManifest(func(e ManifestEntry) error { got = append(got, e); return nil }); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: manifest %+v, want %+v", name, got, want)
		}
		stop := errors.New("stop")
		n := 0
		if err := a.EachManifest(func(ManifestEntry) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
			t.Errorf("%s: fn's error: %v after %d lines", name, err, n)
		}
		if err := a.Close(); err != nil {
			t.Errorf("%s: close: %v", name, err)
		}
	}
}

// What is not a report ZIP is refused with the reason.
func TestReadRefusesWhatIsNoReport(t *testing.T) {
	t.Parallel()
	if _, err := Read(io.NopCloser(strings.NewReader("not a zip"))); err == nil {
		t.Error("a non-ZIP was read")
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if _, err := w.Add("x.txt", strings.NewReader("x"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	a, err := Read(io.NopCloser(bytes.NewReader(buf.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.EachManifest(func(ManifestEntry) error { return nil }); err == nil || !strings.Contains(err.Error(), ManifestName) {
		t.Errorf("no manifest: %v", err)
	}
}
