package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
)

const sampleCSV = "個別識別番号,保険者名,年度\n1,東京,2024\n2,大阪,2025\n"

func TestForm(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for _, path := range []string{"/", "/csv_processing/new"} {
		resp, body := b.get(t, path, "Accept-Language", "ja")
		wantStatus(t, resp, body, http.StatusOK)
		for _, want := range []string{`name="csv_file"`, `name="csv_type"`, `value="pdf"`, `value="text"`, `name="template"`, `name="encoding"`, "CSVアップロード"} {
			if !strings.Contains(body, want) {
				t.Errorf("GET %s: no %q", path, want)
			}
		}
	}
	resp, body := b.get(t, "/", "Accept-Language", "en-US,en;q=0.9,ja;q=0.5")
	wantStatus(t, resp, body, http.StatusOK)
	if !strings.Contains(body, "Upload a CSV") || resp.Header.Get("Content-Language") != "en" {
		t.Errorf("English page expected, got Content-Language %q", resp.Header.Get("Content-Language"))
	}
}

// queuedSplit reads the one SplitCsvJob in queue "report".
func queuedSplit(t *testing.T, b *bundle) *sidekiq.Job {
	t.Helper()
	raws, err := redis.ByteSlices(b.redis.Do(t, "LRANGE", "queue:report", 0, -1), nil)
	if err != nil || len(raws) != 1 {
		t.Fatalf("queue:report = %d jobs, %v; want 1", len(raws), err)
	}
	j, err := sidekiq.ParseJob(raws[0])
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestUploadBrowserRedirects(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	body, ctype := multipartBody(t, part{name: "csv_type", value: "pdf"}, part{name: "encoding", value: "utf-8"},
		part{name: "csv_file", file: "a.csv", value: sampleCSV})
	resp, out := b.do(t, http.MethodPost, "/csv_processing", body, "Content-Type", ctype, "Accept", "text/html,application/xhtml+xml")
	wantStatus(t, resp, out, http.StatusSeeOther)
	loc := resp.Header.Get("Location")
	token, ok := strings.CutPrefix(loc, "/csv_processing/")
	if !ok || router.ValidToken(token) != nil {
		t.Fatalf("Location = %q", loc)
	}
	rc, err := b.store.Open(ctx, "uploads/"+token+".csv")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != sampleCSV {
		t.Errorf("stored upload = %q", got)
	}
	rep, err := b.db.ReportByToken(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != models.ReportPending || rep.ReportType != models.ReportTypePDF || rep.SourceKey != "uploads/"+token+".csv" {
		t.Errorf("report = %+v", rep)
	}
	j := queuedSplit(t, b)
	if j.DisplayClass() != contract.Split.Name || j.Queue != contract.TriggerQueue {
		t.Errorf("job = %s on %s", j.DisplayClass(), j.Queue)
	}
	args, err := j.Arguments()
	if err != nil || len(args) != 3 {
		t.Fatalf("args = %s, %v", args, err)
	}
	var ref contract.SourceRef
	if err := json.Unmarshal(args[0], &ref); err != nil {
		t.Fatal(err)
	}
	if ref.SourceKey != "uploads/"+token+".csv" || ref.Token != token || ref.Encoding != "utf-8" || ref.TemplateKey != "" {
		t.Errorf("source ref = %+v", ref)
	}
	if string(args[1]) != `"pdf"` || string(args[2]) != itoa(rep.ID) {
		t.Errorf("args = %s %s, want \"pdf\" %d", args[1], args[2], rep.ID)
	}
	// The page it redirects to exists.
	resp, out = b.get(t, loc)
	wantStatus(t, resp, out, http.StatusOK)
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestUploadAPICreated(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	// The file comes before the fields, and a template rides along.
	body, ctype := multipartBody(t, part{name: "csv_file", file: "a.csv", value: "col,n\nx,1\n"},
		part{name: "template", file: "t.xlsx", value: string(xlsxTemplate(t, 3))}, part{name: "csv_type", value: "xlsx"})
	resp, out := b.do(t, http.MethodPost, "/csv_processing", body, "Content-Type", ctype, "Accept", "application/json")
	wantStatus(t, resp, out, http.StatusCreated)
	var res map[string]any
	decode(t, out, &res)
	token, _ := res["token"].(string)
	queue, _ := router.Router{}.For(token)
	if res["queue"] != queue || res["status_url"] != "/csv_processing/"+token || res["report_id"] == nil {
		t.Errorf("response = %v", res)
	}
	if _, err := b.store.Stat(ctx, "templates/"+token+".xlsx"); err != nil {
		t.Errorf("template not stored: %v", err)
	}
	args, _ := queuedSplit(t, b).Arguments()
	var ref contract.SourceRef
	_ = json.Unmarshal(args[0], &ref)
	if ref.TemplateKey != "templates/"+token+".xlsx" || string(args[1]) != `"xlsx"` {
		t.Errorf("ref = %+v, type %s", ref, args[1])
	}
}

func TestUploadRejects(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *Deps) { d.MaxUploadBytes = 4096 })
	ctx := context.Background()
	big := strings.Repeat("a,b,c\n", 2000)
	tests := []struct {
		name  string
		parts []part
		raw   string // a non-multipart body instead
		want  int
	}{
		{"no file", []part{{name: "csv_type", value: "xlsx"}}, "", http.StatusBadRequest},
		{"empty file input", []part{{name: "csv_file", file: "", value: ""}}, "", http.StatusBadRequest},
		{"empty file", []part{{name: "csv_file", file: "a.csv", value: ""}}, "", http.StatusUnprocessableEntity},
		{"not multipart", nil, "csv_file=abc", http.StatusBadRequest},
		{"too large", []part{{name: "csv_file", file: "a.csv", value: big}}, "", http.StatusRequestEntityTooLarge},
		{"NUL bytes", []part{{name: "csv_file", file: "a.csv", value: "a,b\n\x00\x01\x02"}}, "", http.StatusUnsupportedMediaType},
		{"xlsx as csv", []part{{name: "csv_file", file: "a.csv", value: "PK\x03\x04abc"}}, "", http.StatusUnsupportedMediaType},
		{"utf-16", []part{{name: "csv_file", file: "a.csv", value: "\xff\xfea\x00"}}, "", http.StatusUnsupportedMediaType},
		{"bad template", []part{{name: "csv_file", file: "a.csv", value: sampleCSV}, {name: "template", file: "t.xlsx", value: "hello"}}, "", http.StatusUnsupportedMediaType},
		{"bad type before file", []part{{name: "csv_type", value: "docx"}, {name: "csv_file", file: "a.csv", value: sampleCSV}}, "", http.StatusUnprocessableEntity},
		{"bad type after file", []part{{name: "csv_file", file: "a.csv", value: sampleCSV}, {name: "csv_type", value: "docx"}}, "", http.StatusUnprocessableEntity},
		{"bad encoding", []part{{name: "encoding", value: "latin1"}, {name: "csv_file", file: "a.csv", value: sampleCSV}}, "", http.StatusUnprocessableEntity},
	}
	for _, tt := range tests {
		var resp *http.Response
		var out string
		if tt.parts != nil {
			body, ctype := multipartBody(t, tt.parts...)
			resp, out = b.do(t, http.MethodPost, "/csv_processing", body, "Content-Type", ctype, "Accept", "application/json")
		} else {
			resp, out = b.do(t, http.MethodPost, "/csv_processing", strings.NewReader(tt.raw),
				"Content-Type", "application/x-www-form-urlencoded", "Accept", "application/json")
		}
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d (%s)", tt.name, resp.StatusCode, tt.want, out)
			continue
		}
		var e map[string]any
		decode(t, out, &e)
		if msg, _ := e["error"].(string); msg == "" {
			t.Errorf("%s: no error message in %s", tt.name, out)
		}
	}
	// A browser gets the same status with an HTML page.
	body, ctype := multipartBody(t, part{name: "csv_type", value: "xlsx"})
	resp, out := b.do(t, http.MethodPost, "/csv_processing", body, "Content-Type", ctype, "Accept", "text/html", "Accept-Language", "ja")
	wantStatus(t, resp, out, http.StatusBadRequest)
	if !strings.Contains(out, "CSVファイルを選択してください") {
		t.Errorf("HTML error page lacks the message: %.300s", out)
	}
	// Nothing was kept and nothing was enqueued.
	for _, prefix := range []string{"uploads/", "templates/"} {
		if infos, err := b.store.List(ctx, prefix); err != nil || len(infos) != 0 {
			t.Errorf("%s after rejected uploads: %v, %v", prefix, infos, err)
		}
	}
	if n, _ := redis.Int(b.redis.Do(t, "LLEN", "queue:report"), nil); n != 0 {
		t.Errorf("%d jobs enqueued by rejected uploads", n)
	}
}

// TestUploadStreams sends 50 MB through a pipe (no Content-Length) and checks
// it lands in storage whole while the heap stays far below its size.
func TestUploadStreams(t *testing.T) {
	b := setup(t, func(d *Deps) { d.MaxUploadBytes = 200 << 20 })
	const size = 50 << 20
	pr, pw := io.Pipe()
	ctype := make(chan string, 1)
	go func() {
		mw := newMultipartStream(pw)
		ctype <- mw.FormDataContentType()
		fw, err := mw.CreateFormFile("csv_file", "big.csv")
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		line := []byte("0123456789,abcdefghij,ABCDEFGHIJ,xyz\n") // 38 bytes
		row := make([]byte, 0, 64<<10)
		for len(row)+len(line) <= cap(row) {
			row = append(row, line...)
		}
		written := 0
		for written < size {
			n := min(len(row), size-written)
			if _, err := fw.Write(row[:n]); err != nil {
				pw.CloseWithError(err)
				return
			}
			written += n
		}
		pw.CloseWithError(mw.Close())
	}()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	req, _ := http.NewRequest(http.MethodPost, b.ts.URL+"/csv_processing", pr)
	req.Header.Set("Content-Type", <-ctype)
	req.Header.Set("Accept", "application/json")
	resp, err := b.client.Do(req)
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantStatus(t, resp, string(out), http.StatusCreated)
	var res struct{ Token string }
	decode(t, string(out), &res)
	info, err := b.store.Stat(context.Background(), "uploads/"+res.Token+".csv")
	if err != nil || info.Size != size {
		t.Fatalf("stored %d bytes, %v; want %d", info.Size, err, size)
	}
	if p := peak.Load(); p > 30<<20 {
		t.Errorf("heap in use peaked at %d MB for a %d MB upload", p>>20, size>>20)
	}
}
