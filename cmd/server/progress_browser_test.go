package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
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
// a time (SPLIT_WINDOW=10, the least, so it is "splitting" almost to its end), watched
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
	srv := e2etest.Start(t, Run, map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": t.TempDir(), "SPLIT_WINDOW": "10"}, "-workers")
	const rows = 5000
	sub := e2etest.Submit(t, srv.URL, e2etest.CSV(rows), "text")
	url := srv.URL + "/csv_processing/" + sub.Token
	browse(t, tab, "run page", chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(`#progress`)))

	const probe = `[Number(document.getElementById("progress").getAttribute("aria-valuenow")),
		parseFloat(document.getElementById("progress").style.width) || 0,
		document.getElementById("state").dataset.state,
		document.getElementById("workers").textContent]`
	var (
		lastJSON, lastBar, lastWidth float64
		estimates, samples           int
		midShot                      bool
		workersSeen                  string
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
		if w := v[3].(string); w != "" && state != "completed" {
			workersSeen = w
		}
		if now < lastBar || width < lastWidth {
			t.Fatalf("the page's bar went back: aria-valuenow %.1f -> %.1f, width %.1f -> %.1f", lastBar, now, lastWidth, width)
		}
		if now != lastBar {
			barSeen = append(barSeen, now)
		}
		lastBar, lastWidth = now, width
		if !midShot && now >= 40 && now <= 70 && state != "completed" {
			midShot = true
			waitBarDrawn(t, tab)
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
	waitBarDrawn(t, tab)
	savePNG(t, "run-completed.png", browseValue(t, tab, "screenshot", chromedp.CaptureScreenshot()))
	// The page says what is being made, from which file, and by whom: the
	// in-process token worker is a process of this one (hostname:pid).
	host, _ := os.Hostname()
	if want := fmt.Sprintf("%s:%d", host, os.Getpid()); !strings.Contains(workersSeen, want) {
		t.Errorf("the run page named the workers %q, want %s among them", workersSeen, want)
	}
	info := browseValue(t, tab, "file and type", chromedp.Evaluate[[]string](`[document.getElementById("file_name").textContent, document.getElementById("report_type").textContent]`))
	if info[0] == "" || info[1] != "text" {
		t.Errorf("the run page shows file %q, type %q", info[0], info[1])
	}
	if estimates == 0 {
		t.Errorf("no estimate was seen after a tenth of the rows (%d samples): the split ended too fast to check it", samples)
	}
	if len(barSeen) < 3 {
		t.Errorf("the bar moved only through %v", barSeen)
	}
	t.Logf("%d samples, %d estimates checked; bar values %s", samples, estimates, strconv.Quote(fmt.Sprint(barSeen)))
}

// waitBarDrawn waits for the bar's width transition (0.4 s) to reach the
// percentage it was given, so a screenshot shows the bar as it reads.
func waitBarDrawn(t *testing.T, tab context.Context) {
	t.Helper()
	const drawn = `(function(){ var p = document.getElementById("progress");
		return Math.abs(p.getBoundingClientRect().width - p.parentElement.getBoundingClientRect().width * parseFloat(p.style.width) / 100) < 2; })()`
	deadline := time.Now().Add(5 * time.Second)
	for !browseValue(t, tab, "bar drawn", chromedp.Evaluate[bool](drawn)) {
		if time.Now().After(deadline) {
			t.Fatal("the bar's width never reached its percentage")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
