package chaos

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/text/encoding/japanese"

	"github.com/pallarel/pallarel/router"
)

// post uploads raw bytes as csv_file and returns the status and body.
func (c *cluster) post(data []byte, filename string, header map[string]string) (int, string) {
	c.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("csv_type", "text")
	w, _ := mw.CreateFormFile("csv_file", filename)
	w.Write(data)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, c.base+"/csv_processing", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Accept", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Case 8: real-world bad CSVs each end with a clear status, never a hang
// or a crash.
func TestBadCSVs(t *testing.T) {
	c := newCluster(t)
	c.worker("report", 2, "report", "default")
	// Token workers: one per upload would be many processes; a worker on
	// every token queue is not possible, so this case runs them in the
	// server's place: the report worker's launcher is "none", and we start
	// a worker per accepted upload.
	sjis, _ := japanese.ShiftJIS.NewEncoder().String("個別識別番号,保険者名,年度\r\nSJ-000001,東京保険,2024\r\nSJ-000002,大阪保険,2025\r\n")
	bigField := "BF-000001," + strings.Repeat("長", 4<<20) + ",2024\nBF-000002,ok,2025\n"
	wide := strings.Repeat("c,", 9999) + "c\n" + strings.Repeat("v,", 9999) + "v\n"
	cases := []struct {
		name     string
		data     string
		rejectAt int    // HTTP status when the upload itself is refused
		state    string // else: the run's final state
		done     int
	}{
		{name: "empty", data: "", rejectAt: 422}, // "The file is empty", not "Choose a CSV file"
		{name: "NUL bytes", data: "a,b\n1,\x002\n", rejectAt: 415},
		{name: "header only", data: "個別識別番号,保険者名,年度\n", rejectAt: 422}, // refused at the door: no data rows
		{name: "only BOM", data: "\xef\xbb\xbf", rejectAt: 422},
		{name: "unbalanced quotes", data: "個別識別番号,保険者名,年度\nUQ-000001,\"open,2024\nUQ-000002,ok,2025\n", state: "completed"},
		{name: "10 MB field", data: "個別識別番号,保険者名,年度\n" + bigField, state: "completed", done: 1},
		{name: "10,000 columns", data: wide, rejectAt: 422}, // the header is read while the upload streams
		{name: "invalid UTF-8", data: "個別識別番号,保険者名,年度\nIU-000001,\xff\xfe\xfd,2024\n", state: "completed"},
		{name: "Shift_JIS without a hint", data: sjis, state: "completed", done: 2},
		{name: "mixed line endings", data: "個別識別番号,保険者名,年度\r\nML-000001,a,2024\nML-000002,b,2025\rML-000003,c,2026\r\n", state: "completed", done: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := c.post([]byte(tc.data), "bad.csv", nil)
			if tc.rejectAt != 0 {
				if code != tc.rejectAt || !strings.Contains(body, "error") {
					t.Fatalf("upload: %d %s (want %d with an error message)", code, body, tc.rejectAt)
				}
				return
			}
			if code != http.StatusCreated {
				t.Fatalf("upload refused: %d %s", code, body)
			}
			token := between(body, `"token":"`, `"`)
			c.worker("token-"+token, 2, router.QueueName(token))
			s := c.waitFinished(token, 90*time.Second)
			t.Logf("%s: state %s, total %d, done %d, failed %d, error %q", tc.name, s.State, s.TotalCount, s.DoneCount, s.FailedCount, s.LastError)
			if s.State != tc.state {
				t.Fatalf("state %s, want %s (%+v)", s.State, tc.state, s)
			}
			if s.State == "failed" && s.LastError == "" {
				t.Fatalf("failed without a reason: %+v", s)
			}
			if tc.done > 0 && s.DoneCount != tc.done {
				t.Fatalf("done %d, want %d", s.DoneCount, tc.done)
			}
			if s.State == "completed" && s.DoneCount+s.FailedCount != s.TotalCount {
				t.Fatalf("rows not all accounted for: %+v", s)
			}
		})
	}
	for name, p := range c.procs {
		select {
		case <-p.done:
			if !strings.HasPrefix(name, "token-") {
				t.Errorf("%s exited: %v", name, p.err)
			}
		default:
		}
	}
}

func between(s, a, b string) string {
	i := strings.Index(s, a)
	if i < 0 {
		return ""
	}
	s = s[i+len(a):]
	if k := strings.Index(s, b); k >= 0 {
		return s[:k]
	}
	return s
}

// Case 10: HTTP abuse: oversized uploads, path traversal in file names,
// malformed and foreign tokens, missing credentials, concurrent uploads.
func TestHTTPAbuse(t *testing.T) {
	c := newCluster(t, "MAX_UPLOAD_BYTES=200000", "AUTH_TOKEN=s3cret")
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	c.worker("report", 3, "report", "default")

	if code, body := c.post(makeCSV("X", 10), "a.csv", nil); code != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d %s", code, body)
	}
	if code, body := c.post(bytes.Repeat([]byte("a,b\n"), 100000), "big.csv", auth); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized: %d %s", code, body)
	}
	code, body := c.post(makeCSV("T", 3), "../../../../etc/pallarel-pwned.csv", auth)
	if code != http.StatusCreated {
		t.Fatalf("traversal name: %d %s", code, body)
	}
	filepath.WalkDir(c.dir, func(p string, d os.DirEntry, err error) error {
		if d != nil && strings.Contains(d.Name(), "pwned") {
			t.Errorf("upload file name reached the disk: %s", p)
		}
		return nil
	})
	if _, err := os.Stat("/etc/pallarel-pwned.csv"); err == nil {
		t.Fatal("path traversal wrote /etc/pallarel-pwned.csv")
	}
	get := func(path string, hdr map[string]string) int {
		req, _ := http.NewRequest(http.MethodGet, c.base+path, nil)
		req.Header.Set("Accept", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for path, want := range map[string]int{
		"/csv_processing/not-a-token":                                   400,
		"/csv_processing/..%2f..%2fetc%2fpasswd":                        404, // no route: never reaches storage
		"/csv_processing/" + router.NewToken():                          404,
		"/csv_processing/" + router.NewToken() + "/download":            404,
		"/csv_processing/0F8FAD5B-D9CB-469F-A165-70867728950E/download": 404,
	} {
		if got := get(path, auth); got != want {
			t.Errorf("GET %s: %d, want %d", path, got, want)
		}
	}
	if got := get("/csv_processing/status", nil); got != http.StatusUnauthorized {
		t.Errorf("status list without credentials: %d", got)
	}

	// Concurrent uploads: each ZIP holds its own rows only.
	const uploads, rows = 6, 200
	var wg sync.WaitGroup
	tokens := make([]string, uploads)
	for i := range uploads {
		wg.Go(func() {
			code, body := c.post(makeCSV(fmt.Sprintf("U%d", i), rows), "u.csv", auth)
			if code != http.StatusCreated {
				t.Errorf("upload %d: %d %s", i, code, body)
				return
			}
			tokens[i] = between(body, `"token":"`, `"`)
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, tok := range tokens {
		c.worker("token-"+tok, 2, router.QueueName(tok))
		_ = i
	}
	old := http.DefaultTransport
	http.DefaultClient.Transport = bearer{"s3cret", old}
	defer func() { http.DefaultClient.Transport = nil }()
	for i, tok := range tokens {
		if s := c.waitFinished(tok, 120*time.Second); s.State != "completed" {
			t.Fatalf("upload %d: %+v", i, s)
		}
		expectIntact(t, c.verify(tok, fmt.Sprintf("U%d", i), rows), 0)
	}
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}
