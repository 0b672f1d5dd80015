package jobs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/run"
)

const endSecret = "end-secret"

// endEnv is a pipeline whose runs call a webhook receiver when they end.
func endEnv(t *testing.T, renderers ...render.Renderer) (*env, *hookReceiver) {
	hook := newHookReceiver(t)
	e := newEnvWith(t, envOptions{renderers: renderers, workers: 3, timeout: time.Second,
		deps: func(d *jobs.Deps) { d.WebhookURL, d.WebhookSecret = hook.URL+"/hook", endSecret }})
	return e, hook
}

// assertEnded checks what End leaves of every ending: the state recorded
// once with its end time, the report saying why, the token's queue and its
// jobs elsewhere gone, no row files, no ledger key left without a TTL, its
// worker stopped (when it had one) and the webhook delivered deliveries
// times in all.
func assertEnded(t *testing.T, e *env, hook *hookReceiver, id int64, token string, want run.State, deliveries int) {
	t.Helper()
	ctx := context.Background()
	queue := e.queue(token)
	waitFor(t, 20*time.Second, "the cleanup of an ended run", func() bool {
		return e.redisInt("LLEN", "queue:"+queue) == 0 && len(e.rowFiles(token)) == 0 &&
			e.redisInt("TTL", contract.CountKey(token)) != -1 && e.redisInt("TTL", contract.TotalKey(token)) != -1 &&
			len(hook.deliveries()) >= deliveries
	})
	st := e.status(token)
	if run.State(st.RunState()) != want || !st.Ended() || st.EndedAt == nil {
		t.Fatalf("status: state %q ended %v ended_at %v, want %q", st.RunState(), st.Ended(), st.EndedAt, want)
	}
	rep, err := e.models.ReportByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	switch want {
	case run.Completed:
		if rep.Status != models.ReportCompleted || rep.File != contract.ResultKey(token) {
			t.Fatalf("report %+v", rep)
		}
	default:
		if rep.Status != models.ReportFailed || rep.ErrorMessage == "" || !strings.Contains(st.LastError, st.StateReason) {
			t.Fatalf("report %+v, last error %q, reason %q", rep, st.LastError, st.StateReason)
		}
		if info, err := e.store.Stat(ctx, contract.ResultKey(token)); err == nil && info.Size > 0 {
			t.Fatalf("a failed run keeps a ZIP")
		}
	}
	if e.tokenEntries(token, contract.Webhook.Name, contract.CancelCleanup.Name) != 0 {
		t.Fatalf("jobs of the ended run left in the schedule or retry set")
	}
	if st.WorkerTaskArn != "" {
		waitFor(t, 10*time.Second, "the worker stopped", func() bool {
			e.mu.Lock()
			defer e.mu.Unlock()
			for _, id := range e.stopped {
				if id == st.WorkerTaskArn {
					return true
				}
			}
			return false
		})
	}
	got := hook.deliveries()
	if len(got) != deliveries {
		t.Fatalf("%d webhook deliveries, want %d", len(got), deliveries)
	}
	if p := verify(t, got[len(got)-1], endSecret); p.Token != token || p.State != string(want) {
		t.Fatalf("webhook payload %+v, want %s %s", p, token, want)
	}
	if n, err := redis.Int(e.db.Do(t, "EXISTS", contract.WebhookSentKey(token)), nil); err != nil || n != 1 {
		t.Fatalf("webhook marker: %d %v", n, err)
	}
}

func TestEndCompleted(t *testing.T) {
	t.Parallel()
	e, hook := endEnv(t)
	id := e.newReport(models.ReportTypeXLSX)
	e.split("id,v\na,1\nb,2\nc,3\n", "text", id)
	rep := e.completed(id, 30*time.Second)
	assertEnded(t, e, hook, id, rep.Token, run.Completed, 1)
}

func TestEndFailed(t *testing.T) {
	t.Parallel()
	e, hook := endEnv(t)
	id := e.newReport(models.ReportTypeXLSX)
	e.split("", "xlsx", id) // an empty CSV: the split ends the run failed
	rep := e.waitReport(id, 20*time.Second)
	assertEnded(t, e, hook, id, rep.Token, run.Failed, 1)
	if st := e.status(rep.Token); !strings.Contains(st.StateReason, "CSV cannot be read") {
		t.Fatalf("reason %q", st.StateReason)
	}
	// Ending again changes nothing: the first end won.
	if won, err := e.pipeline.End(context.Background(), rep.Token, run.Ending{State: run.Cancelled, Reason: "late"}); err != nil || won {
		t.Fatalf("second End = %v, %v", won, err)
	}
	if st := e.status(rep.Token); st.RunState() != models.RunFailed {
		t.Fatalf("state after a second End: %q", st.RunState())
	}
}

func TestEndCancelled(t *testing.T) {
	t.Parallel()
	gate := &gateRenderer{free: 2, open: make(chan struct{})}
	e, hook := endEnv(t, gate)
	ctx := context.Background()
	id, token := e.gatedRun(30, 2)
	if err := e.pipeline.Cancel(ctx, token); err != nil {
		t.Fatal(err)
	}
	// The rows still running are let go only after: what they store late
	// is the second cleanup's (TestCancelMidRun).
	defer close(gate.open)
	assertEnded(t, e, hook, id, token, run.Cancelled, 1)
	if e.tokenEntries(token) == 0 {
		t.Fatalf("a cancelled run's second cleanup is not scheduled")
	}
}

// A run reopened by "Retry failed rows" ends again through End, with the
// same cleanup and a second delivery.
func TestEndRetried(t *testing.T) {
	t.Parallel()
	e, hook := endEnv(t, &flakyRenderer{seen: map[int]bool{}})
	ctx := context.Background()
	id, token := e.splitStored("id,v\na,ok\nb,FAIL\nc,ok\n")
	e.completed(id, 30*time.Second)
	assertEnded(t, e, hook, id, token, run.Completed, 1)
	if n, err := e.pipeline.RetryFailed(ctx, token); err != nil || n != 1 {
		t.Fatalf("RetryFailed = %d, %v", n, err)
	}
	waitFor(t, 30*time.Second, "the retried run ended again", func() bool { return len(hook.deliveries()) == 2 })
	assertEnded(t, e, hook, id, token, run.Completed, 2)
	if m := manifestRows(t, e.readZip(contract.ResultKey(token))); m[2][1] != "done" {
		t.Fatalf("row 2 after retry: %q", m[2])
	}
}
