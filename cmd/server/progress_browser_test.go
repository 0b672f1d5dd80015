package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/redistest"
)

// progressJSON is what the test reads of a run's JSON.
type progressJSON struct {
	State          string  `json:"state"`
	TotalCount     int     `json:"total_count"`
	EstimatedTotal *int    `json:"estimated_total"`
	DoneCount      int     `json:"done_count"`
	FailedCount    int     `json:"failed_count"`
	Percentage     float64 `json:"percentage"`
}

func readProgress(url string) (progressJSON, error) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return progressJSON{}, err
	}
	defer resp.Body.Close()
	var p progressJSON
	if resp.StatusCode != http.StatusOK {
		return p, fmt.Errorf("%s", resp.Status)
	}
	return p, json.NewDecoder(resp.Body).Decode(&p)
}

// TestWindowedProgressMonotonic: a 5,000-row run split a small window at
// a time (SPLIT_WINDOW=20, so it is "splitting" almost to its end), watched
// through its JSON and in headless Chromium on its page. The JSON's
// percentage and the page's bar never go back; while splitting the total
// is never dropped (an estimate as soon as rows have ended); once a tenth
// of the rows are done (so more than a tenth of the bytes were read) the
// estimate is within 10 % of the real 5,000. With E2E_SCREENSHOT_DIR set
// the page is saved mid-run and at the end (the README's screenshots).
func TestWindowedProgressMonotonic(t *testing.T) {
	t.Parallel()
	tab := newBrowser(t)
	db := redistest.New(t)
	srv := e2etest.Start(t, Run, map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": t.TempDir(), "SPLIT_WINDOW": "20"}, "-workers")
	const rows = 5000
	sub := e2etest.Submit(t, srv.URL, e2etest.CSV(rows), "text")
	url := srv.URL + "/csv_processing/" + sub.Token
	browse(t, tab, "run page", chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(`#progress`)))

	const probe = `[Number(document.getElementById("progress").getAttribute("aria-valuenow")),
		parseFloat(document.getElementById("progress").style.width) || 0,
		document.getElementById("state").dataset.state]`
	var (
		lastJSON, lastBar, lastWidth float64
		estimates, samples           int
		midShot                      bool
		barSeen                      []float64
	)
	deadline := time.Now().Add(runTimeout)
	for {
		p, err := readProgress(url)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		samples++
		if p.Percentage < lastJSON {
			t.Fatalf("JSON percentage went back from %.1f to %.1f (%+v)", lastJSON, p.Percentage, p)
		}
		lastJSON = p.Percentage
		ended := p.DoneCount + p.FailedCount
		if p.State == "splitting" && ended > 0 && p.EstimatedTotal == nil && p.TotalCount == 0 {
			t.Fatalf("splitting with %d rows ended and no total: %+v", ended, p)
		}
		if p.EstimatedTotal != nil && ended >= rows/10 {
			estimates++
			if off := math.Abs(float64(*p.EstimatedTotal-rows)) / rows; off > 0.10 {
				t.Fatalf("estimate %d after %d rows ended: %.0f%% off", *p.EstimatedTotal, ended, off*100)
			}
		}
		v := browseValue(t, tab, "read the bar", chromedp.Evaluate[[]any](probe))
		now, width, state := v[0].(float64), v[1].(float64), v[2].(string)
		if now < lastBar || width < lastWidth {
			t.Fatalf("the page's bar went back: aria-valuenow %.1f -> %.1f, width %.1f -> %.1f", lastBar, now, lastWidth, width)
		}
		if now != lastBar {
			barSeen = append(barSeen, now)
		}
		lastBar, lastWidth = now, width
		if !midShot && now >= 30 && now <= 70 && state != "completed" {
			midShot = true
			savePNG(t, "run-midway.png", browseValue(t, tab, "screenshot", chromedp.CaptureScreenshot()))
		}
		if state == "completed" && now == 100 {
			break
		}
		if p.State == "failed" || p.State == "cancelled" || time.Now().After(deadline) {
			t.Fatalf("run stopped at %+v, bar %.1f", p, now)
		}
		time.Sleep(50 * time.Millisecond)
	}
	savePNG(t, "run-completed.png", browseValue(t, tab, "screenshot", chromedp.CaptureScreenshot()))
	if estimates == 0 {
		t.Errorf("no estimate was seen after a tenth of the rows (%d samples): the split ended too fast to check it", samples)
	}
	if len(barSeen) < 3 {
		t.Errorf("the bar moved only through %v", barSeen)
	}
	t.Logf("%d samples, %d estimates checked; bar values %s", samples, estimates, strconv.Quote(fmt.Sprint(barSeen)))
}
