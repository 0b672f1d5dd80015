package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/redistest"
)

// TestBrowserCancelAndRetry drives the run page's buttons in headless
// Chromium: Cancel on a run no worker has taken yet, then, on a run that
// completed with a failed row, the failed row listed with its reason and
// Retry failed rows, which says there is nothing to retry (the row cannot
// be parsed) and leaves the run completed.
func TestBrowserCancelAndRetry(t *testing.T) {
	t.Parallel()
	tab := newBrowser(t)
	db := redistest.New(t)
	dataDir := t.TempDir()
	web := e2etest.Start(t, Run, map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": dataDir, "LAUNCHER": "none"})
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.csv"), filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(good, e2etest.CSV(20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, append(e2etest.CSV(20), "\"A-99999,unterminated\r\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	upload := func(base, file string) {
		browse(t, tab, "upload "+file,
			chromedp.Navigate(base+"/?lang=en"),
			chromedp.WaitVisible(chromedp.CSS(`#upload`)),
			chromedp.SetValue(chromedp.CSS(`#csv_type`), "text"),
			chromedp.SetUploadFiles(chromedp.CSS(`#csv_file`), []string{file}),
			chromedp.Submit(chromedp.CSS(`#upload`)),
			chromedp.WaitVisible(chromedp.CSS(`#progress`)),
		)
	}

	// Cancel: the run waits for a worker that never comes.
	upload(web.URL, good)
	browse(t, tab, "cancel",
		chromedp.WaitVisible(chromedp.CSS(`#cancel`)),
		chromedp.Click(chromedp.CSS(`#cancel`)),
		chromedp.WaitVisible(chromedp.CSS(`#state[data-state="cancelled"]`)),
	)
	reason := browseValue(t, tab, "reason", chromedp.Text(chromedp.CSS(`#state_reason`)))
	hidden := browseValue(t, tab, "cancel hidden", chromedp.Evaluate[bool](`document.getElementById("cancel").offsetParent === null`))
	if reason != "cancelled by user" || !hidden {
		t.Fatalf("after cancel: reason %q, cancel form hidden %v", reason, hidden)
	}
	savePNG(t, "cancelled.png", browseValue(t, tab, "screenshot", chromedp.CaptureScreenshot()))

	// Retry: a worker deployment beside the web server does the work.
	workers := e2etest.Start(t, Run, map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": dataDir}, "-workers")
	upload(workers.URL, bad)
	browse(t, tab, "completed with a failed row",
		chromedp.WaitVisible(chromedp.CSS(`#state[data-state="completed"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#failed-table tbody tr`)),
		chromedp.WaitVisible(chromedp.CSS(`#retry`)),
	)
	row := browseValue(t, tab, "failed row", chromedp.Text(chromedp.CSS(`#failed-table tbody tr`)))
	counts := browseValue(t, tab, "counts", chromedp.Evaluate[string](`document.getElementById("done").textContent + "/" + document.getElementById("failed").textContent + " cancel shown " + (document.getElementById("cancel").offsetParent !== null)`))
	if counts != "20/1 cancel shown false" {
		t.Errorf("completed page shows %q", counts)
	}
	if !strings.HasPrefix(row, "21") || !strings.Contains(row, "line 22") {
		t.Fatalf("failed row shown as %q", row)
	}
	savePNG(t, "failed-rows.png", browseValue(t, tab, "screenshot", chromedp.CaptureScreenshot()))
	runURL := browseValue(t, tab, "location", chromedp.Location())
	browse(t, tab, "retry",
		chromedp.Evaluate[chromedp.Void](`window.e2eBeforeRetry = true`),
		chromedp.Click(chromedp.CSS(`#retry`)),
	)
	// The only failed row cannot be parsed, so running it again would fail
	// it again: the answer says there is nothing to retry (409), and the
	// run stays completed with its ZIP and its failed row.
	browse(t, tab, "nothing to retry", chromedp.WaitVisible(chromedp.CSS(`body`)))
	const said = `!window.e2eBeforeRetry && document.body.textContent.indexOf("Nothing to retry") >= 0`
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ok, err := chromedp.Run(tab, chromedp.Evaluate[bool](said))
		if err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.body.textContent`))
			t.Fatalf("after Retry the page says %q (%v), want Nothing to retry", body, err)
		}
	}
	browse(t, tab, "back to the run", chromedp.Navigate(runURL),
		chromedp.WaitVisible(chromedp.CSS(`#state[data-state="completed"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#download`)),
	)
	const firstFailed = `(function(){ var r = document.querySelector("#failed-table tbody tr"); return r ? r.textContent : ""; })()`
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		row, err := chromedp.Run(tab, chromedp.Evaluate[string](firstFailed))
		if err == nil && strings.HasPrefix(row, "21") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("failed row after the refused retry: %q, %v", row, err)
		}
	}
	if code := workers.Stop(t); code != 0 {
		t.Errorf("workers Run returned %d", code)
	}
	if code := web.Stop(t); code != 0 {
		t.Errorf("web Run returned %d", code)
	}
}
