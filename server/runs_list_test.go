package server

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pallarel/pallarel/router"
)

// TestRunsList: the list shows each run's file name, type, state and
// duration, filters by state and pages.
func TestRunsList(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	// Five uploads through the form (file names kept), then states set.
	var tokens []string
	for i, name := range []string{"一覧.csv", `C:\Users\me\b.csv`, "c.csv", "d.csv", "e.csv"} {
		body, ctype := multipartBody(t, part{name: "csv_type", value: []string{"xlsx", "text"}[i%2]}, part{name: "csv_file", file: name, value: sampleCSV})
		resp, out := b.do(t, http.MethodPost, "/csv_processing", body, "Content-Type", ctype, "Accept", "application/json")
		wantStatus(t, resp, out, http.StatusCreated)
		var res struct{ Token string }
		decode(t, out, &res)
		tokens = append(tokens, res.Token)
	}
	rep, _ := b.db.ReportByToken(ctx, tokens[0])
	if err := b.db.MarkReportCompleted(ctx, rep.ID, "reports/"+tokens[0]+".zip", 2); err != nil {
		t.Fatal(err)
	}
	var res struct {
		Runs []struct {
			Token, State, FileName, ReportType string   `json:",omitempty"`
			FileNameJSON                       string   `json:"file_name"`
			ReportTypeJSON                     string   `json:"report_type"`
			Duration                           *float64 `json:"duration_seconds"`
		}
		More bool
		Page int
	}
	resp, body := b.get(t, "/csv_processing/status?limit=2&format=json")
	wantStatus(t, resp, body, http.StatusOK)
	decode(t, body, &res)
	if len(res.Runs) != 2 || !res.More || res.Runs[0].Token != tokens[4] || res.Runs[0].FileNameJSON != "e.csv" ||
		res.Runs[0].ReportTypeJSON != "xlsx" || res.Runs[0].Duration == nil {
		t.Fatalf("page 1: %s", body)
	}
	resp, body = b.get(t, "/csv_processing/status?limit=2&page=3&format=json")
	wantStatus(t, resp, body, http.StatusOK)
	res.Runs = nil
	decode(t, body, &res)
	if len(res.Runs) != 1 || res.More || res.Runs[0].Token != tokens[0] || res.Runs[0].FileNameJSON != "一覧.csv" || res.Runs[0].State != "completed" {
		t.Fatalf("page 3: %s", body)
	}
	resp, body = b.get(t, "/csv_processing/status?state=completed&format=json")
	wantStatus(t, resp, body, http.StatusOK)
	res.Runs = nil
	decode(t, body, &res)
	if len(res.Runs) != 1 || res.Runs[0].Token != tokens[0] {
		t.Fatalf("state=completed: %s", body)
	}
	resp, body = b.get(t, "/csv_processing/status?state=pending&limit=10&format=json")
	res.Runs = nil
	decode(t, body, &res)
	if len(res.Runs) != 4 {
		t.Fatalf("state=pending: %s", body)
	}
	for _, bad := range []string{"state=nope", "page=0", "page=x"} {
		resp, body = b.get(t, "/csv_processing/status?"+bad)
		wantStatus(t, resp, body, http.StatusBadRequest)
	}
	// The HTML page: names (a Windows path cut to its base), filter, pager.
	resp, body = b.get(t, "/csv_processing/status?limit=2&page=2")
	wantStatus(t, resp, body, http.StatusOK)
	for _, want := range []string{"b.csv", "c.csv", `id="state-filter"`, `id="newer"`, `id="older"`, `page=3`} {
		if !strings.Contains(body, want) {
			t.Errorf("HTML page 2 lacks %q", want)
		}
	}
	if strings.Contains(body, `Users`) {
		t.Error("the client's directory is shown")
	}
}

// TestDownloadStates: before the result exists the download says why:
// 409 with the state while the run goes on, 410 once retention removed it;
// an unknown token stays 404.
func TestDownloadStates(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	token, rep := newRun(t, b, false)
	resp, body := b.get(t, "/csv_processing/"+token+"/download", "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusConflict)
	if !strings.Contains(body, `"state":"pending"`) {
		t.Errorf("409 body: %s", body)
	}
	if err := b.db.MarkReportCompleted(ctx, rep.ID, "reports/"+token+".zip", 1); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := b.db.UpdateReportColumns(ctx, rep.ID, map[string]any{"expired_at": &now}); err != nil {
		t.Fatal(err)
	}
	resp, body = b.get(t, "/csv_processing/"+token+"/download", "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusGone)
	resp, body = b.get(t, "/csv_processing/"+token, "Accept-Language", "en")
	wantStatus(t, resp, body, http.StatusOK)
	if !strings.Contains(body, `id="expired"`) || strings.Contains(body, `id="download"`) {
		t.Errorf("expired run's page: %.2000s", body)
	}
	resp, body = b.get(t, "/csv_processing/"+router.NewToken()+"/download")
	wantStatus(t, resp, body, http.StatusNotFound)
}

// TestLastErrorShown: stored errors lose internal paths, and a completed
// run without failed rows shows none (a retry got past it).
func TestLastErrorShown(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"open /var/lib/pallarel/storage/rows/x/seg-1: no such file or directory": "open seg-1: no such file or directory",
		"panic at /work/wt/web/jobs/row.go:123 in render":                        "panic at row.go:123 in render",
		"line 3 (row 2): wrong number of fields":                                 "line 3 (row 2): wrong number of fields",
		"GET https://s3.example.com/bucket/key: 500":                             "GET https://s3.example.com/bucket/key: 500",
		"key rows/abc/def missing":                                               "key rows/abc/def missing",
	} {
		if got := cleanError(in); got != want {
			t.Errorf("cleanError(%q) = %q, want %q", in, got, want)
		}
	}
	b := setup(t, nil)
	ctx := context.Background()
	token, rep := newRun(t, b, true)
	if err := b.db.SetLastError(ctx, token, "zip: write /tmp/pallarel-123/x.zip: disk full"); err != nil {
		t.Fatal(err)
	}
	resp, body := b.get(t, "/csv_processing/"+token, "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusOK)
	if !strings.Contains(body, `"last_error":"zip: write x.zip: disk full"`) {
		t.Errorf("running: %s", body)
	}
	if err := b.db.MarkReportCompleted(ctx, rep.ID, "reports/"+token+".zip", 10); err != nil {
		t.Fatal(err)
	}
	_, body = b.get(t, "/csv_processing/"+token, "Accept", "application/json")
	if !strings.Contains(body, `"last_error":""`) {
		t.Errorf("completed after a retry: %s", body)
	}
}

// TestDashboardHardening: Busy counts as Sidekiq's Web UI (the processes'
// busy fields), bulk buttons only with entries, arguments masked on demand.
func TestDashboardHardening(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	identity, _ := seedSidekiq(t, b)
	// 18 busy by the heartbeat, one :work entry: Ruby's Busy says 18.
	b.redis.Do(t, "HSET", identity, "busy", 18)
	resp, body := b.get(t, "/sidekiq/busy")
	wantStatus(t, resp, body, http.StatusOK)
	if !strings.Contains(body, `id="sum-busy">18<`) || !strings.Contains(body, `id="sum-threads">10<`) || !strings.Contains(body, `id="sum-processes">1<`) {
		t.Errorf("busy summary: %.3000s", body)
	}
	b.redis.Do(t, "DEL", "retry")
	_, body = b.get(t, "/sidekiq/retries")
	if strings.Contains(body, "retry_all") || strings.Contains(body, "delete_all") {
		t.Error("bulk buttons on an empty list")
	}
	_, body = b.get(t, "/sidekiq/morgue")
	if !strings.Contains(body, "delete_all") {
		t.Error("no bulk buttons on a list with entries")
	}

	m := setup(t, func(d *Deps) { d.MaskJobArgs = true })
	seedSidekiq(t, m)
	for _, path := range []string{"/sidekiq/busy", "/sidekiq/queues/report-0123456789abcdef", "/sidekiq/retries", "/sidekiq/queues/report"} {
		resp, body := m.get(t, path)
		wantStatus(t, resp, body, http.StatusOK)
		if strings.Contains(body, "東京") || strings.Contains(body, "a,b") || strings.Contains(body, "&#34;tok&#34;") || !strings.Contains(body, "[masked]") {
			t.Errorf("%s shows arguments: %.3000s", path, body)
		}
	}
	// Deleting a queued job still works, by JID.
	_, page := m.get(t, "/sidekiq/queues/report")
	jid := strings.SplitN(strings.SplitN(page, `name="jid" value="`, 2)[1], `"`, 2)[0]
	resp, body = m.do(t, http.MethodPost, "/sidekiq/queues/report/delete", form("authenticity_token", csrfToken(t, page), "jid", jid),
		"Content-Type", "application/x-www-form-urlencoded")
	wantStatus(t, resp, body, http.StatusSeeOther)
	if n := llen(t, m, "queue:report"); n != 0 {
		t.Errorf("queue:report has %d jobs after delete by JID", n)
	}
}
