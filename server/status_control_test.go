package server

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/ledger"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/router"
)

// testClock is a clock the test moves.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// setupRuns is setup with a real jobs.Pipeline as the run control, on the
// same Redis, database and store.
func setupRuns(t *testing.T, tweak func(*Deps)) *bundle {
	t.Helper()
	return setup(t, func(d *Deps) {
		p, err := jobs.New(jobs.Deps{Pool: d.Pool, Client: d.Client, API: d.API, Store: d.Store, DB: d.DB,
			Launcher: launcher.Noop{}, Renderers: render.NewRegistry(), Logger: d.Logger})
		if err != nil {
			t.Fatal(err)
		}
		d.Runs = p
		if tweak != nil {
			tweak(d)
		}
	})
}

func TestCancelAPI(t *testing.T) {
	t.Parallel()
	b := setupRuns(t, nil)
	token, rep := newRun(t, b, true)
	path := "/csv_processing/" + token + "/cancel"
	resp, body := b.do(t, http.MethodPost, path, strings.NewReader("{}"), "Content-Type", "application/json")
	wantStatus(t, resp, body, http.StatusOK)
	var res map[string]any
	decode(t, body, &res)
	if res["state"] != "cancelled" || res["token"] != token {
		t.Fatalf("cancel answer %v", res)
	}
	resp, body = b.get(t, "/csv_processing/"+token, "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusOK)
	var v map[string]any
	decode(t, body, &v)
	if v["state"] != "cancelled" || v["state_reason"] != "cancelled by user" || v["can_cancel"] != false || v["can_retry"] != false ||
		v["eta_seconds"] != nil || v["ended_at"] == nil || v["duration_seconds"] == nil || v["stalled"] != false {
		t.Fatalf("cancelled run = %v", v)
	}
	if r, _ := b.db.ReportByID(context.Background(), rep.ID); r.Status != models.ReportFailed || r.ErrorMessage != "cancelled by user" {
		t.Fatalf("report %+v", r)
	}
	resp, body = b.do(t, http.MethodPost, path, strings.NewReader("{}"), "Content-Type", "application/json")
	wantStatus(t, resp, body, http.StatusConflict)
	resp, body = b.do(t, http.MethodPost, "/csv_processing/"+router.NewToken()+"/cancel", strings.NewReader("{}"), "Content-Type", "application/json")
	wantStatus(t, resp, body, http.StatusNotFound)
	resp, body = b.do(t, http.MethodPost, "/csv_processing/nope/cancel", strings.NewReader("{}"), "Content-Type", "application/json")
	wantStatus(t, resp, body, http.StatusBadRequest)
	// Retry: only a completed run with failed rows.
	resp, body = b.do(t, http.MethodPost, "/csv_processing/"+token+"/retry", strings.NewReader("{}"), "Content-Type", "application/json")
	wantStatus(t, resp, body, http.StatusConflict)
	if !strings.Contains(body, "error") {
		t.Errorf("409 body %s", body)
	}
}

var runFormRE = regexp.MustCompile(`id="cancel-form"[^>]*>\s*<input type="hidden" name="authenticity_token" value="([^"]+)"`)

func TestCancelForm(t *testing.T) {
	t.Parallel()
	b := setupRuns(t, nil)
	token, _ := newRun(t, b, false) // uploaded, not split yet
	resp, page := b.get(t, "/csv_processing/"+token, "Accept", "text/html", "Accept-Language", "en")
	wantStatus(t, resp, page, http.StatusOK)
	m := runFormRE.FindStringSubmatch(page)
	if m == nil || strings.Contains(page, `id="cancel-form" method="post" action="/csv_processing/`+token+`/cancel" hidden`) {
		t.Fatalf("no visible cancel form on a pending run's page:\n%s", page)
	}
	if !strings.Contains(page, `id="retry-form" method="post" action="/csv_processing/`+token+`/retry" hidden`) {
		t.Error("the retry form of a pending run is not hidden")
	}
	path := "/csv_processing/" + token + "/cancel"
	ct := "application/x-www-form-urlencoded"
	// A form from elsewhere: no token, a wrong one, another origin.
	resp, body := b.do(t, http.MethodPost, path, form(), "Content-Type", ct)
	wantStatus(t, resp, body, http.StatusForbidden)
	resp, body = b.do(t, http.MethodPost, path, form("authenticity_token", strings.Repeat("0", 64)), "Content-Type", ct)
	wantStatus(t, resp, body, http.StatusForbidden)
	resp, body = b.do(t, http.MethodPost, path, form("authenticity_token", m[1]), "Content-Type", ct, "Origin", "https://evil.example")
	wantStatus(t, resp, body, http.StatusForbidden)
	// A token of another run does not cancel this one.
	other, _ := newRun(t, b, false)
	_, otherPage := b.get(t, "/csv_processing/"+other)
	resp, body = b.do(t, http.MethodPost, path, form("authenticity_token", runFormRE.FindStringSubmatch(otherPage)[1]), "Content-Type", ct)
	wantStatus(t, resp, body, http.StatusForbidden)

	resp, body = b.do(t, http.MethodPost, path, form("authenticity_token", m[1]), "Content-Type", ct, "Origin", b.ts.URL)
	wantStatus(t, resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/csv_processing/"+token {
		t.Fatalf("redirect to %q", loc)
	}
	_, page = b.get(t, "/csv_processing/"+token, "Accept-Language", "en")
	for _, want := range []string{`data-state="cancelled"`, "cancelled by user", `action="/csv_processing/` + token + `/cancel" hidden`} {
		if !strings.Contains(page, want) {
			t.Errorf("cancelled page lacks %q", want)
		}
	}
}

func TestFailedRowsList(t *testing.T) {
	t.Parallel()
	b := setupRuns(t, nil)
	ctx := context.Background()
	token, _ := newRun(t, b, true)
	rows := ledger.Ledger{Pool: b.redis.Pool}
	for n := 1; n <= 120; n++ {
		r := ledger.RowResult{Row: n, Key: ledger.RowKey(n, ""), Status: "done", File: fmt.Sprintf("%d.txt", n)}
		if n%2 == 0 {
			r = ledger.RowResult{Row: n, Key: ledger.RowKey(n, ""), Status: "failed", Error: fmt.Sprintf("bad value in row %d <b>", n)}
		}
		if _, _, err := rows.Record(ctx, token, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.db.IncrementFailed(ctx, token, 60); err != nil {
		t.Fatal(err)
	}
	resp, body := b.get(t, "/csv_processing/"+token+"/failed?page=2", "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusOK)
	var fv struct {
		Rows []struct {
			Row   int
			Error string
		}
		Total, Page, Pages int
		Source             string
	}
	decode(t, body, &fv)
	if fv.Total != 60 || fv.Page != 2 || fv.Pages != 2 || fv.Source != "ledger" || len(fv.Rows) != 10 || fv.Rows[0].Row != 102 || fv.Rows[9].Row != 120 ||
		fv.Rows[0].Error != "bad value in row 102 <b>" {
		t.Fatalf("page 2 = %+v", fv)
	}
	for _, bad := range []string{"0", "x", "-1"} {
		resp, body = b.get(t, "/csv_processing/"+token+"/failed?page="+bad, "Accept", "application/json")
		wantStatus(t, resp, body, http.StatusBadRequest)
	}
	resp, body = b.get(t, "/csv_processing/"+router.NewToken()+"/failed", "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusNotFound)
	// The page lists the first 50 with their reasons, escaped, and links on.
	resp, page := b.get(t, "/csv_processing/"+token, "Accept-Language", "en")
	wantStatus(t, resp, page, http.StatusOK)
	for _, want := range []string{`<td class="num">2</td><td class="err">bad value in row 2 &lt;b&gt;</td>`, `id="failed_total">60<`, `id="failed-next" href="?page=2#failed"`, "Page 1 / 2"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "row 102") {
		t.Error("page 1 shows a row of page 2")
	}
	_, page = b.get(t, "/csv_processing/"+token+"?page=2", "Accept-Language", "en")
	if !strings.Contains(page, "bad value in row 120") || !strings.Contains(page, `id="failed-prev" href="?page=1#failed"`) {
		t.Error("page 2 of the failed rows is wrong")
	}
}

func TestProgressFigures(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}
	b := setupRuns(t, func(d *Deps) { d.Now = clock.Now })
	b.db.Now = clock.Now
	ctx := context.Background()
	token, _ := newRun(t, b, true) // total 10 until the split says otherwise
	get := func() map[string]any {
		t.Helper()
		resp, body := b.get(t, "/csv_processing/"+token, "Accept", "application/json")
		wantStatus(t, resp, body, http.StatusOK)
		var v map[string]any
		decode(t, body, &v)
		return v
	}
	// Splitting: a quarter of the bytes read gave 250 rows, so about 1000.
	if err := b.db.SetState(ctx, token, models.RunSplitting, ""); err != nil {
		t.Fatal(err)
	}
	if err := b.db.SetSplitProgress(ctx, token, 25_000, 100_000, 250); err != nil {
		t.Fatal(err)
	}
	if err := b.db.IncrementDone(ctx, token, 100); err != nil {
		t.Fatal(err)
	}
	clock.add(5 * time.Second)
	v := get()
	// The first look: a rate since the start (20 rows/s), but no ETA until
	// the recent window has rateMinSpan of samples.
	if v["state"] != "splitting" || v["estimated_total"] != 1000.0 || v["percentage"] != 10.0 || v["rate"] != 20.0 || v["eta_seconds"] != nil {
		t.Fatalf("splitting = %v", v)
	}
	if err := b.db.IncrementDone(ctx, token, 40); err != nil {
		t.Fatal(err)
	}
	clock.add(2 * time.Second)
	v = get() // 40 rows in the last 2 s: 20 rows/s, 860 left
	if v["estimated_total"] != 1000.0 || v["percentage"] != 14.0 || v["rate"] != 20.0 || v["eta_seconds"] != 43.0 {
		t.Fatalf("splitting = %v", v)
	}
	_, page := b.get(t, "/csv_processing/"+token, "Accept-Language", "en")
	if !strings.Contains(page, `id="total">~1000<`) || !strings.Contains(page, `id="eta">43s<`) || !strings.Contains(page, "splitting") {
		t.Errorf("splitting page: %s", page)
	}
	if err := b.db.IncrementDone(ctx, token, -40); err != nil {
		t.Fatal(err)
	}
	// The split ended: 1000 rows. The rate is the recent one: 100 rows in
	// the last 10 s, not 200 rows in 50 s since the start.
	if err := b.db.SetTotal(ctx, token, 1000); err != nil {
		t.Fatal(err)
	}
	if err := b.db.SetState(ctx, token, models.RunProcessing, ""); err != nil {
		t.Fatal(err)
	}
	clock.add(40 * time.Second)
	v = get() // no rows for 40 s: a recent rate of 0 and no ETA
	if v["estimated_total"] != nil || v["rate"] != 0.0 || v["eta_seconds"] != nil {
		t.Fatalf("idle = %v", v)
	}
	if err := b.db.IncrementDone(ctx, token, 100); err != nil {
		t.Fatal(err)
	}
	clock.add(10 * time.Second)
	v = get()
	if v["rate"] != 10.0 || v["eta_seconds"] != 80.0 || v["stalled"] != false {
		t.Fatalf("processing = %v", v)
	}
	// Stalled: the reason instead of an ETA.
	if err := b.db.SetState(ctx, token, models.RunProcessing, "no worker consumes the queue; relaunching (attempt 2 of 5)"); err != nil {
		t.Fatal(err)
	}
	v = get()
	if v["stalled"] != true || v["eta_seconds"] != nil || !strings.Contains(v["state_reason"].(string), "relaunching") {
		t.Fatalf("stalled = %v", v)
	}
	_, page = b.get(t, "/csv_processing/"+token, "Accept-Language", "en")
	if !strings.Contains(page, `id="eta">stalled<`) || !strings.Contains(page, "relaunching (attempt 2 of 5)") {
		t.Error("the page does not say stalled with the reason")
	}
	// Ended: the duration from the upload, no ETA.
	clock.add(63 * time.Second)
	if ok, err := b.db.ClaimFinalize(ctx, token); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := b.db.MarkEnded(ctx, token, models.RunCompleted, ""); err != nil {
		t.Fatal(err)
	}
	v = get()
	// An ended run shows its mean rate (200 rows in 120 s) to a tenth.
	if v["state"] != "completed" || v["duration_seconds"] != 120.0 || v["eta_seconds"] != nil || v["can_cancel"] != false || v["rate"] != 1.7 {
		t.Fatalf("ended = %v", v)
	}
	_, page = b.get(t, "/csv_processing/"+token, "Accept-Language", "en")
	if !strings.Contains(page, `id="duration">2m 0s<`) {
		t.Error("the page does not show the duration")
	}
}

func TestUploadWebhookURL(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	body, ctype := multipartBody(t, part{name: "webhook_url", value: "https://rails.example/hooks/pallarel?k=1"},
		part{name: "csv_file", file: "a.csv", value: sampleCSV})
	resp, out := b.do(t, http.MethodPost, "/csv_processing", body, "Content-Type", ctype, "Accept", "application/json")
	wantStatus(t, resp, out, http.StatusCreated)
	var res struct{ Token string }
	decode(t, out, &res)
	rep, err := b.db.ReportByToken(ctx, res.Token)
	if err != nil || rep.WebhookURL != "https://rails.example/hooks/pallarel?k=1" {
		t.Fatalf("report %+v, %v", rep, err)
	}
	for _, bad := range []string{"javascript:alert(1)", "ftp://x/y", "not a url", "http://user:pw@h/"} {
		body, ctype = multipartBody(t, part{name: "webhook_url", value: bad}, part{name: "csv_file", file: "a.csv", value: sampleCSV})
		resp, out = b.do(t, http.MethodPost, "/csv_processing", body, "Content-Type", ctype, "Accept", "application/json")
		wantStatus(t, resp, out, http.StatusUnprocessableEntity)
	}
}
