package server

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/pallarel/pallarel/models"
)

// A run waiting its turn for a worker says so, with the runs ahead, on its
// JSON status and its page, and is not called stalled.
func TestStatusWaitingForAWorker(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	token, _ := newRun(t, b, true)
	if err := b.db.SetState(context.Background(), token, models.RunProcessing, "waiting for a worker (2 ahead)"); err != nil {
		t.Fatal(err)
	}
	resp, body := b.get(t, "/csv_processing/"+token, "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusOK)
	var v map[string]any
	decode(t, body, &v)
	if v["waiting"] != true || v["stalled"] != false || v["state_reason"] != "waiting for a worker (2 ahead)" {
		t.Fatalf("waiting run = waiting %v, stalled %v, state_reason %v", v["waiting"], v["stalled"], v["state_reason"])
	}
	resp, body = b.get(t, "/csv_processing/"+token)
	wantStatus(t, resp, body, http.StatusOK)
	if !strings.Contains(body, "waiting for a worker (2 ahead)") {
		t.Fatalf("the page does not say the run waits:\n%s", body)
	}
}
