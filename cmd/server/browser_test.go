package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/redistest"
)

// chromiumPath is Debian's chromium (apt-get install -y chromium).
const chromiumPath = "/usr/bin/chromium"

// browserTimeout bounds the whole browser session.
const browserTimeout = 120 * time.Second

// newBrowser starts headless Chromium with the flags that work on the CI
// machines (no sandbox as root, no GPU, no background traffic) and a fresh
// profile, and returns a tab context bounded by browserTimeout.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing (apt-get install -y chromium; .ci/run does): %v", chromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	}
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	tab, tcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(tcancel)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return tab
}

// browse runs steps in the tab, failing the test with step in the message.
func browse(t *testing.T, ctx context.Context, step string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %s: %v", step, err)
	}
}

// browseValue runs one action that returns a value.
func browseValue[T any](t *testing.T, ctx context.Context, step string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %s: %v", step, err)
	}
	return v
}

// TestBrowserUploadProgressDownload drives the real UI in headless
// Chromium: upload a CSV with the form, land on the run's page, watch its
// progress bar reach 100% from the events stream without a reload, follow
// the download link, and find the worker on the dashboard's Busy page.
//
// The web server runs alone first, so the page is seen while the run is
// still pending; a second Run with -workers on the same Redis, database and
// storage then does the work, as a worker deployment beside the web does.
func TestBrowserUploadProgressDownload(t *testing.T) {
	t.Parallel()
	tab := newBrowser(t)
	db := redistest.New(t)
	dataDir := t.TempDir()
	web := e2etest.Start(t, Run, map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": dataDir, "LAUNCHER": "none"})

	const rows = 200
	csvPath := filepath.Join(t.TempDir(), "一覧.csv")
	if err := os.WriteFile(csvPath, e2etest.CSV(rows), 0o644); err != nil {
		t.Fatal(err)
	}

	browse(t, tab, "upload form",
		chromedp.Navigate(web.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#upload`)),
		chromedp.SetValue(chromedp.CSS(`#csv_type`), "text"),
		chromedp.SetUploadFiles(chromedp.CSS(`#csv_file`), []string{csvPath}),
		chromedp.Submit(chromedp.CSS(`#upload`)),
		chromedp.WaitVisible(chromedp.CSS(`#progress`)),
	)
	location := browseValue(t, tab, "location", chromedp.Location())
	state := browseValue(t, tab, "state", chromedp.AttributeValue(chromedp.CSS(`#state`), "data-state")).Value
	token, ok := strings.CutPrefix(location, web.URL+"/csv_processing/")
	if !ok || len(token) != 36 {
		t.Fatalf("after submit the browser is at %q", location)
	}
	if state != "pending" {
		t.Fatalf("state %q before any worker runs, want pending", state)
	}
	// A marker in the page's JavaScript state survives only if the page is
	// never reloaded; the navigation's timeOrigin must not change either.
	origin := browseValue(t, tab, "set marker", chromedp.Evaluate[float64](`window.e2eMarker = "kept"; performance.timeOrigin`))

	workers := e2etest.Start(t, Run, map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": dataDir}, "-workers")

	type view struct {
		Now     string  `json:"now"`
		Done    string  `json:"done"`
		State   string  `json:"state"`
		Marker  string  `json:"marker"`
		Origin  float64 `json:"origin"`
		NavType string  `json:"nav"`
		Link    string  `json:"link"`
	}
	const probe = `({now: document.getElementById("progress").getAttribute("aria-valuenow"),
		done: document.getElementById("done").textContent,
		state: document.getElementById("state").dataset.state,
		marker: window.e2eMarker || "",
		origin: performance.timeOrigin,
		nav: (performance.getEntriesByType("navigation")[0] || {}).type || "",
		link: (document.getElementById("download") || {}).href || ""})`
	var seen []string
	var v view
	read := chromedp.Evaluate[view](probe)
	deadline := time.Now().Add(runTimeout)
	for {
		v = browseValue(t, tab, "read progress", read)
		if len(seen) == 0 || seen[len(seen)-1] != v.Now {
			seen = append(seen, v.Now)
		}
		if v.Marker != "kept" || v.Origin != origin {
			t.Fatalf("the page was reloaded: %+v (timeOrigin was %v)", v, origin)
		}
		if v.Now == "100" && v.Link != "" {
			break
		}
		if v.State == "failed" || time.Now().After(deadline) {
			t.Fatalf("progress stopped at %+v (seen %v)", v, seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("aria-valuenow seen without reload: %v (navigation type %q)", seen, v.NavType)
	if v.State != "completed" || v.Done != fmt.Sprint(rows) || v.Link != web.URL+"/csv_processing/"+token+"/download" {
		t.Fatalf("finished page: %+v", v)
	}
	browse(t, tab, "download link", chromedp.WaitVisible(chromedp.CSS(`#download`)))
	// Times the stream filled in read as the server renders them.
	fin := browseValue(t, tab, "finalized_at", chromedp.Evaluate[string](`document.getElementById("finalized_at").textContent`))
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$`).MatchString(fin) {
		t.Errorf("finalized_at from the stream reads %q, want the page's 2006-01-02 15:04:05 UTC", fin)
	}
	savePNG(t, "status.png", browseValue(t, tab, "screenshot", chromedp.CaptureScreenshot()))

	// The link the page shows serves the ZIP.
	e2etest.CheckTextReport(t, e2etest.ReadZip(t, e2etest.Download(t, web.URL, token)), rows)

	// The dashboard lists the worker process (hostname:pid of this process).
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%s:%d", host, os.Getpid())
	browse(t, tab, "busy page", chromedp.Navigate(web.URL+"/sidekiq/busy"))
	busy := browseValue(t, tab, "processes", chromedp.Text(chromedp.CSS(`#processes`)))
	savePNG(t, "busy.png", browseValue(t, tab, "screenshot", chromedp.CaptureScreenshot()))
	if !strings.Contains(busy, want) {
		t.Fatalf("busy page does not list %s:\n%s", want, busy)
	}
	if code := workers.Stop(t); code != 0 {
		t.Errorf("workers Run returned %d", code)
	}
	if code := web.Stop(t); code != 0 {
		t.Errorf("web Run returned %d", code)
	}
}

// savePNG writes a screenshot into the test's temp dir and logs its path.
func savePNG(t *testing.T, name string, png []byte) {
	t.Helper()
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot %s is not a PNG (%d bytes)", name, len(png))
	}
	dir := t.TempDir()
	if keep := os.Getenv("E2E_SCREENSHOT_DIR"); keep != "" {
		dir = keep // kept after the test, to look at
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
