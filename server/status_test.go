package server

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/router"
)

// newRun records a run as the upload and SplitCsvJob leave it: a report
// with the token and, when started, its status row.
func newRun(t *testing.T, b *bundle, started bool) (string, models.ClientReport) {
	t.Helper()
	ctx := context.Background()
	token := router.NewToken()
	rep := models.ClientReport{Status: models.ReportPending, Token: token}
	if err := b.db.CreateReport(ctx, &rep); err != nil {
		t.Fatal(err)
	}
	if started {
		queue, _ := router.Router{}.For(token)
		if err := b.db.MarkReportProcessing(ctx, rep.ID, token); err != nil {
			t.Fatal(err)
		}
		if _, err := b.db.CreateStatus(ctx, token, queue, 10); err != nil {
			t.Fatal(err)
		}
	}
	return token, rep
}

func TestStatusOne(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()

	resp, body := b.get(t, "/csv_processing/not-a-token", "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusBadRequest)
	if !strings.Contains(body, "error") {
		t.Errorf("400 body = %s", body)
	}
	resp, body = b.get(t, "/csv_processing/not-a-token")
	wantStatus(t, resp, body, http.StatusBadRequest)
	resp, body = b.get(t, "/csv_processing/"+router.NewToken(), "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusNotFound)

	token, rep := newRun(t, b, false)
	resp, body = b.get(t, "/csv_processing/"+token, "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusOK)
	var v map[string]any
	decode(t, body, &v)
	if v["state"] != "pending" || v["report_id"] != float64(rep.ID) {
		t.Errorf("pending run = %v", v)
	}

	token, rep = newRun(t, b, true)
	if err := b.db.IncrementDone(ctx, token, 4); err != nil {
		t.Fatal(err)
	}
	if err := b.db.IncrementFailed(ctx, token, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.db.RecordWorker(ctx, token, "arn:aws:ecs:task/abc", time.Now().Add(-10*time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, body = b.get(t, "/csv_processing/"+token, "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusOK)
	v = nil
	decode(t, body, &v)
	var keys []string
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range []string{"token", "state", "total_count", "done_count", "failed_count", "percentage", "rate", "eta_seconds",
		"queue_name", "worker_task_arn", "worker_started_at", "finalized_at", "last_error", "report_id", "created_at", "updated_at"} {
		if _, ok := v[k]; !ok {
			t.Errorf("JSON lacks %q (has %v)", k, keys)
		}
	}
	queue, _ := router.Router{}.For(token)
	if v["state"] != "processing" || v["total_count"] != 10.0 || v["done_count"] != 4.0 || v["failed_count"] != 1.0 ||
		v["percentage"] != 50.0 || v["queue_name"] != queue || v["worker_task_arn"] != "arn:aws:ecs:task/abc" {
		t.Errorf("processing run = %v", v)
	}
	if r, _ := v["rate"].(float64); r <= 0 {
		t.Errorf("rate = %v, want > 0", v["rate"])
	}
	if v["eta_seconds"] != nil {
		t.Errorf("eta_seconds = %v on the first look, want none until the recent rate is known", v["eta_seconds"])
	}
	if _, ok := v["download_url"]; ok {
		t.Error("download_url before completion")
	}

	// The HTML page carries the stable ids the live script updates.
	resp, body = b.get(t, "/csv_processing/"+token, "Accept", "text/html", "Accept-Language", "ja")
	wantStatus(t, resp, body, http.StatusOK)
	for _, want := range []string{`id="progress"`, `aria-valuenow="50"`, `id="state"`, `id="done">4<`, `id="total">10<`, "/events", "処理中", `id="eta">計算中…<`} {
		if !strings.Contains(body, want) {
			t.Errorf("HTML page lacks %q", want)
		}
	}

	// Completed: Finalize marks the report and deletes the status row.
	if err := b.db.MarkReportCompleted(ctx, rep.ID, "reports/"+token+".zip", 9); err != nil {
		t.Fatal(err)
	}
	if err := b.db.DeleteStatus(ctx, token); err != nil {
		t.Fatal(err)
	}
	resp, body = b.get(t, "/csv_processing/"+token, "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusOK)
	v = nil
	decode(t, body, &v)
	if v["state"] != "completed" || v["percentage"] != 100.0 || v["download_url"] != "/csv_processing/"+token+"/download" {
		t.Errorf("completed run = %v", v)
	}
	resp, body = b.get(t, "/csv_processing/"+token)
	if !strings.Contains(body, `id="download"`) {
		t.Error("completed page has no #download link")
	}
}

func TestStatusList(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	resp, body := b.get(t, "/csv_processing/status", "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusOK)
	if !strings.HasPrefix(strings.TrimSpace(body), `{"runs":[],`) {
		t.Errorf("empty list = %s", body)
	}
	var tokens []string
	for i := range 12 {
		tok, _ := newRun(t, b, i%2 == 0)
		tokens = append(tokens, tok)
	}
	var res struct {
		Runs []struct {
			Token, State string
		}
	}
	resp, body = b.get(t, "/csv_processing/status", "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusOK)
	decode(t, body, &res)
	if len(res.Runs) != 10 || res.Runs[0].Token != tokens[11] {
		t.Errorf("default list: %d runs, first %+v; want 10, newest first", len(res.Runs), res.Runs)
	}
	resp, body = b.get(t, "/csv_processing/status?limit=3&format=json")
	wantStatus(t, resp, body, http.StatusOK)
	res.Runs = nil
	decode(t, body, &res)
	if len(res.Runs) != 3 {
		t.Errorf("limit=3 gave %d", len(res.Runs))
	}
	for _, bad := range []string{"0", "x", "1000"} {
		resp, body = b.get(t, "/csv_processing/status?limit="+bad)
		wantStatus(t, resp, body, http.StatusBadRequest)
	}
	resp, body = b.get(t, "/csv_processing/status", "Accept-Language", "ja")
	wantStatus(t, resp, body, http.StatusOK)
	if !strings.Contains(body, tokens[11]) || !strings.Contains(body, "処理状況一覧") {
		t.Error("HTML list lacks the newest token")
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	resp, body := b.get(t, "/csv_processing/bad/events")
	wantStatus(t, resp, body, http.StatusBadRequest)
	resp, body = b.get(t, "/csv_processing/"+router.NewToken()+"/events")
	wantStatus(t, resp, body, http.StatusNotFound)

	token, rep := newRun(t, b, true)
	req, _ := http.NewRequest(http.MethodGet, b.ts.URL+"/csv_processing/"+token+"/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	sresp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer sresp.Body.Close()
	if ct := sresp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type = %q", ct)
	}
	events := make(chan map[string]any)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(sresp.Body)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			if e, ok := strings.CutPrefix(line, "event:"); ok {
				event = strings.TrimSpace(e)
			}
			if d, ok := strings.CutPrefix(line, "data:"); ok && event == "status" {
				var v map[string]any
				if json.Unmarshal([]byte(strings.TrimSpace(d)), &v) == nil {
					events <- v
				}
			}
		}
	}()
	first := <-events
	if first["token"] != token || first["state"] != "processing" || first["total_count"] != 10.0 {
		t.Fatalf("first event = %v", first)
	}
	if err := b.db.IncrementDone(ctx, token, 10); err != nil {
		t.Fatal(err)
	}
	if err := b.db.MarkReportCompleted(ctx, rep.ID, "reports/"+token+".zip", 10); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case v, ok := <-events:
			if !ok {
				t.Fatal("stream ended before the completed event")
			}
			if v["state"] != "completed" {
				continue
			}
			// After the final event the server closes the stream.
			if _, more := <-events; more {
				t.Error("events after completed")
			}
			return
		case <-deadline:
			t.Fatal("no completed event within 5s")
		}
	}
}

// TestEventsClientGone checks the stream handler returns when the client
// disconnects: its request is only counted in the metrics once it has.
func TestEventsClientGone(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *Deps) { d.EventInterval = time.Hour })
	token, _ := newRun(t, b, true)
	resp, err := b.client.Get(b.ts.URL + "/csv_processing/" + token + "/events")
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "event:") {
		t.Fatalf("first line %q, %v", line, err)
	}
	resp.Body.Close()
	want := `pallarel_http_requests_total{method="GET",route="/csv_processing/:token/events",status="200"} 1`
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := b.get(t, "/metrics")
		if strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("events handler still running 5s after the client left")
		}
		time.Sleep(10 * time.Millisecond) // polling the state, with a deadline
	}
}
