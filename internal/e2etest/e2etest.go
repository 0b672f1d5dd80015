// Package e2etest has helpers for end-to-end tests of the binaries, in the
// spirit of wtf's MustRunMain: start a server's Run on 127.0.0.1:0 with
// temp dirs, upload CSVs over real HTTP, wait for the run to end, and read
// the report ZIP it delivers. Every wait has a deadline.
package e2etest

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// RunFunc is the signature of cmd/server's Run (internal/servercmd.Run).
type RunFunc func(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer, ready chan<- string) int

// Buffer is a bytes.Buffer safe for a writer and readers in other goroutines.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Server is a server Run started in this test process.
type Server struct {
	// URL is the base URL, e.g. http://127.0.0.1:41234 (no trailing slash).
	URL string
	// Stdout and Stderr are what Run printed (the welcome text, the log).
	Stdout, Stderr *Buffer

	cancel context.CancelFunc
	done   chan int
	once   sync.Once
	code   int
}

// StartTimeout bounds how long a server may take to listen.
const StartTimeout = 60 * time.Second

// StopTimeout bounds a graceful stop.
const StopTimeout = 60 * time.Second

// Start runs run with "-addr 127.0.0.1:0" plus args and the environment env
// (nothing else is visible to it), and waits until it listens. The server is
// stopped in tb.Cleanup if the test did not stop it; its log is printed when
// the test failed.
func Start(tb testing.TB, run RunFunc, env map[string]string, args ...string) *Server {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Stdout: &Buffer{}, Stderr: &Buffer{}, cancel: cancel, done: make(chan int, 1)}
	ready := make(chan string, 1)
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	go func() {
		s.done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), lookup, s.Stdout, s.Stderr, ready)
	}()
	tb.Cleanup(func() {
		s.stop()
		if tb.Failed() {
			tb.Logf("server stdout:\n%s\nserver stderr:\n%s", s.Stdout, s.Stderr)
		}
	})
	select {
	case addr := <-ready:
		s.URL = "http://" + addr
	case code := <-s.done:
		s.once.Do(func() { s.code = code })
		tb.Fatalf("server exited with %d before listening:\n%s", code, s.Stderr)
	case <-time.After(StartTimeout):
		tb.Fatalf("server did not listen within %v:\n%s", StartTimeout, s.Stderr)
	}
	return s
}

// stop cancels Run and returns its exit code, or -1 when it did not return
// within StopTimeout.
func (s *Server) stop() int {
	s.once.Do(func() {
		s.cancel()
		select {
		case s.code = <-s.done:
		case <-time.After(StopTimeout):
			s.code = -1
		}
	})
	return s.code
}

// Stop cancels the server's context, waits for Run and returns its exit code.
func (s *Server) Stop(tb testing.TB) int {
	tb.Helper()
	code := s.stop()
	if code == -1 {
		tb.Fatalf("server did not stop within %v", StopTimeout)
	}
	return code
}

// Headers are the columns of the CSVs CSV makes: Japanese, as the Rails
// app's uploads; the first one names the row files.
var Headers = []string{"個別識別番号", "氏名", "保険者名", "金額"}

// CSV makes a UTF-8 CSV (CRLF) with Headers and rows rows; row n (1-based)
// has the values RowValues(n).
func CSV(rows int) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.UseCRLF = true
	_ = w.Write(Headers)
	for n := 1; n <= rows; n++ {
		_ = w.Write(RowValues(n))
	}
	w.Flush()
	return b.Bytes()
}

// RowValues are the values of row n of CSV.
func RowValues(n int) []string {
	return []string{fmt.Sprintf("A-%05d", n), fmt.Sprintf("山田 太郎%d", n), "東京保険組合", fmt.Sprint(n * 100)}
}

// Client is an HTTP client with a timeout for every request.
var client = &http.Client{Timeout: 30 * time.Second}

// Get fetches url with the Accept header (none when empty) and returns the
// response with its body read.
func Get(tb testing.TB, url, accept string) (*http.Response, []byte) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp, body
}

// Upload posts csvData as the form does (multipart csv_file, csv_type,
// encoding=auto) to base/csv_processing, with the Accept header given,
// without following redirects. It returns the response with its body read.
func Upload(tb testing.TB, base string, csvData []byte, typ, accept string) (*http.Response, []byte) {
	tb.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("csv_type", typ)
	_ = mw.WriteField("encoding", "auto")
	fw, err := mw.CreateFormFile("csv_file", "一覧.csv")
	if err != nil {
		tb.Fatal(err)
	}
	fw.Write(csvData)
	mw.Close()
	req, err := http.NewRequest(http.MethodPost, base+"/csv_processing", &body)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	noRedirect := *client
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noRedirect.Do(req)
	if err != nil {
		tb.Fatalf("POST %s/csv_processing: %v", base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp, b
}

// Submission is the 201 JSON answer to an upload.
type Submission struct {
	Token     string `json:"token"`
	ReportID  int64  `json:"report_id"`
	Queue     string `json:"queue"`
	StatusURL string `json:"status_url"`
}

// Submit uploads csvData as an API client (Accept: application/json) and
// wants 201 with a token.
func Submit(tb testing.TB, base string, csvData []byte, typ string) Submission {
	tb.Helper()
	resp, body := Upload(tb, base, csvData, typ, "application/json")
	if resp.StatusCode != http.StatusCreated {
		tb.Fatalf("upload: %s: %s", resp.Status, body)
	}
	var s Submission
	if err := json.Unmarshal(body, &s); err != nil || s.Token == "" {
		tb.Fatalf("upload answer %s: %v", body, err)
	}
	if loc := resp.Header.Get("Location"); loc != s.StatusURL || s.StatusURL != "/csv_processing/"+s.Token {
		tb.Fatalf("upload: Location %q, status_url %q, token %s", loc, s.StatusURL, s.Token)
	}
	return s
}

// Status is a run's JSON status (the fields the tests read).
type Status struct {
	Token       string  `json:"token"`
	State       string  `json:"state"`
	TotalCount  int     `json:"total_count"`
	DoneCount   int     `json:"done_count"`
	FailedCount int     `json:"failed_count"`
	Percentage  float64 `json:"percentage"`
	QueueName   string  `json:"queue_name"`
	// WorkerTaskArn is the launcher task id ("inproc:<queue>" in-process).
	WorkerTaskArn string `json:"worker_task_arn"`
	LastError     string `json:"last_error"`
	ReportID      int64  `json:"report_id"`
	DownloadURL   string `json:"download_url"`
}

// GetStatus reads GET base/csv_processing/<token> as JSON.
func GetStatus(tb testing.TB, base, token string) Status {
	tb.Helper()
	resp, body := Get(tb, base+"/csv_processing/"+token, "application/json")
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("status %s: %s: %s", token, resp.Status, body)
	}
	var s Status
	if err := json.Unmarshal(body, &s); err != nil {
		tb.Fatalf("status %s: %v: %s", token, err, body)
	}
	return s
}

// WaitEnded polls the run's status until it is completed or failed and
// returns it; it fails the test after timeout.
func WaitEnded(tb testing.TB, base, token string, timeout time.Duration) Status {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var s Status
	for {
		s = GetStatus(tb, base, token)
		if s.State == "completed" || s.State == "failed" || s.State == "cancelled" {
			return s
		}
		if time.Now().After(deadline) {
			tb.Fatalf("run %s still %s after %v: %+v", token, s.State, timeout, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Download fetches the run's ZIP and checks its headers.
func Download(tb testing.TB, base, token string) []byte {
	tb.Helper()
	resp, body := Get(tb, base+"/csv_processing/"+token+"/download", "")
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("download %s: %s: %s", token, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/zip" {
		tb.Errorf("download Content-Type %q", ct)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.Contains(cd, "report-"+token+".zip") {
		tb.Errorf("download Content-Disposition %q", cd)
	}
	return body
}

// ReadZip returns the entries of a ZIP by name.
func ReadZip(tb testing.TB, data []byte) map[string][]byte {
	tb.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		tb.Fatalf("not a ZIP (%d bytes, starts %q): %v", len(data), data[:min(len(data), 16)], err)
	}
	out := map[string][]byte{}
	for _, f := range zr.File {
		r, err := f.Open()
		if err != nil {
			tb.Fatalf("zip entry %s: %v", f.Name, err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			tb.Fatalf("zip entry %s: %v", f.Name, err)
		}
		out[f.Name] = b
	}
	return out
}

// CheckTextReport checks a text-type report ZIP of CSV(rows): manifest.csv
// lists rows 1..rows as done with their file, and each file holds its row's
// "header: value" lines.
func CheckTextReport(tb testing.TB, files map[string][]byte, rows int) {
	tb.Helper()
	raw, ok := files["manifest.csv"]
	if !ok {
		tb.Fatalf("no manifest.csv in %d entries", len(files))
	}
	recs, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")))).ReadAll()
	if err != nil {
		tb.Fatalf("manifest.csv: %v", err)
	}
	if len(recs) != rows+1 || strings.Join(recs[0], ",") != "row,file,status,error" {
		tb.Fatalf("manifest.csv has %d lines, header %q; want %d rows", len(recs), recs[0], rows)
	}
	if len(files) != rows+1 {
		tb.Errorf("ZIP has %d entries, want %d row files + manifest.csv", len(files), rows)
	}
	seen := map[string]bool{}
	for _, rec := range recs[1:] {
		if len(rec) != 4 || rec[2] != "done" || rec[3] != "" {
			tb.Errorf("manifest line %q: want a done row", rec)
			continue
		}
		var n int
		if _, err := fmt.Sscan(rec[0], &n); err != nil || n < 1 || n > rows || seen[rec[0]] {
			tb.Errorf("manifest line %q: bad or repeated row number", rec)
			continue
		}
		seen[rec[0]] = true
		vals := RowValues(n)
		if want := fmt.Sprintf("row-%06d-%s.txt", n, vals[0]); rec[1] != want {
			tb.Errorf("row %d file %q, want %q", n, rec[1], want)
		}
		var want strings.Builder
		for i, h := range Headers {
			fmt.Fprintf(&want, "%s: %s\n", h, vals[i])
		}
		if got := string(files[rec[1]]); got != want.String() {
			tb.Errorf("row %d file %s = %q, want %q", n, rec[1], got, want.String())
		}
	}
}
