package server

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pallarel/pallarel/models"
)

// TestProgressNeverBackwards: when the real total replaces a low estimate,
// the percentage waits for the rows to catch up instead of dropping.
func TestProgressNeverBackwards(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}
	b := setup(t, func(d *Deps) { d.Now = clock.Now })
	b.db.Now = clock.Now
	ctx := context.Background()
	token, _ := newRun(t, b, true)
	get := func() map[string]any {
		t.Helper()
		resp, body := b.get(t, "/csv_processing/"+token, "Accept", "application/json")
		wantStatus(t, resp, body, http.StatusOK)
		var v map[string]any
		decode(t, body, &v)
		return v
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.db.SetTotal(ctx, token, 0))
	must(b.db.SetState(ctx, token, models.RunSplitting, ""))
	// Splitting, nothing read yet: no estimate, 0 %.
	if v := get(); v["estimated_total"] != nil || v["percentage"] != 0.0 {
		t.Fatalf("before the split's first record: %v", v)
	}
	must(b.db.SetSplitProgress(ctx, token, 10_000, 100_000, 100)) // about 1000 rows
	must(b.db.IncrementDone(ctx, token, 300))
	clock.add(time.Second)
	if v := get(); v["estimated_total"] != 1000.0 || v["percentage"] != 30.0 {
		t.Fatalf("estimated: %v", v)
	}
	// The split ends at 2000 rows: 300 of 2000 is 15 %, but 30 % was shown.
	must(b.db.SetTotal(ctx, token, 2000))
	must(b.db.SetState(ctx, token, models.RunProcessing, ""))
	clock.add(time.Second)
	if v := get(); v["estimated_total"] != nil || v["total_count"] != 2000.0 || v["percentage"] != 30.0 {
		t.Fatalf("real total: %v", v)
	}
	// The page renders the same figure as the JSON.
	if _, page := b.get(t, "/csv_processing/"+token, "Accept-Language", "en"); !strings.Contains(page, `id="percentage">30.0<`) {
		t.Errorf("page does not show 30.0%%")
	}
	must(b.db.IncrementDone(ctx, token, 400))
	clock.add(time.Second)
	if v := get(); v["percentage"] != 35.0 {
		t.Fatalf("caught up: %v", v)
	}
}

// TestCancelKeepsCounts: a run cancelled while it was still splitting
// keeps its total (the rows the split had read) and its estimate, instead
// of "1836 done, 0 failed of 0".
func TestCancelKeepsCounts(t *testing.T) {
	t.Parallel()
	b := setupRuns(t, nil)
	ctx := context.Background()
	token, _ := newRun(t, b, true)
	for _, err := range []error{
		b.db.SetTotal(ctx, token, 0),
		b.db.SetState(ctx, token, models.RunSplitting, ""),
		b.db.SetSplitProgress(ctx, token, 40_000, 100_000, 1836),
		b.db.IncrementDone(ctx, token, 1836),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	resp, body := b.do(t, http.MethodPost, "/csv_processing/"+token+"/cancel", strings.NewReader("{}"), "Content-Type", "application/json")
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = b.get(t, "/csv_processing/"+token, "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusOK)
	var v map[string]any
	decode(t, body, &v)
	if v["state"] != "cancelled" || v["total_count"] != 1836.0 || v["estimated_total"] != 4590.0 || v["done_count"] != 1836.0 || v["percentage"] != 40.0 {
		t.Fatalf("cancelled run: %v", v)
	}
	if _, page := b.get(t, "/csv_processing/"+token, "Accept-Language", "en"); !strings.Contains(page, `id="total">~4590<`) {
		t.Errorf("the page does not show the estimated total")
	}
}
