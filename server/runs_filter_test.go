package server

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/pallarel/pallarel/models"
)

// TestRunsListFiltersEveryState: ?state= takes every state a run is shown
// in, cancelled and splitting included, and the page offers them all.
func TestRunsListFiltersEveryState(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	byState := map[string]string{}
	for _, state := range listStates {
		token, rep := newRun(t, b, state != statePending)
		byState[state] = token
		switch state {
		case stateSplitting, stateProcessing:
			must(b.db.SetState(ctx, token, state, ""))
		case stateCompleted:
			must(b.db.MarkReportCompleted(ctx, rep.ID, "reports/"+token+".zip", 10))
			must(b.db.MarkEnded(ctx, token, models.RunCompleted, ""))
		case stateFailed:
			must(b.db.MarkReportFailed(ctx, rep.ID, "boom"))
			must(b.db.MarkEnded(ctx, token, models.RunFailed, "boom"))
		case stateCancelled:
			must(b.db.MarkReportFailed(ctx, rep.ID, "cancelled by user"))
			must(b.db.MarkEnded(ctx, token, models.RunCancelled, "cancelled by user"))
		}
	}
	for _, state := range listStates {
		var res struct {
			Runs []struct{ Token, State string }
		}
		resp, body := b.get(t, "/csv_processing/status?state="+state+"&format=json")
		wantStatus(t, resp, body, http.StatusOK)
		decode(t, body, &res)
		if len(res.Runs) != 1 || res.Runs[0].Token != byState[state] || res.Runs[0].State != state {
			t.Errorf("state=%s: %s", state, body)
		}
	}
	resp, page := b.get(t, "/csv_processing/status", "Accept-Language", "en")
	wantStatus(t, resp, page, http.StatusOK)
	for _, state := range listStates {
		if !strings.Contains(page, `<option value="`+state+`"`) {
			t.Errorf("the filter lacks %s", state)
		}
	}
}
