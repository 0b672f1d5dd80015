package jobs_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/ledger"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/run/webhook"
	"github.com/pallarel/pallarel/sidekiq"
)

// gateRenderer ("pdf") renders rows up to free at once and holds the others
// until open is closed.
type gateRenderer struct {
	free int
	open chan struct{}
}

func (*gateRenderer) Name() string { return "pdf" }
func (*gateRenderer) Ext() string  { return ".txt" }
func (g *gateRenderer) Render(ctx context.Context, w io.Writer, row render.Row) error {
	if row.Number > g.free {
		select {
		case <-g.open:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	_, err := fmt.Fprintf(w, "row %d", row.Number)
	return err
}

// hookReceiver records webhook deliveries; it answers fail[i] for the i-th
// delivery (500 when true), 204 after that.
type hookReceiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  []hookDelivery
	fail []bool
}

type hookDelivery struct {
	body                                  []byte
	signature, timestamp, event, delivery string
}

func newHookReceiver(t *testing.T, fail ...bool) *hookReceiver {
	h := &hookReceiver{fail: fail}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		n := len(h.got)
		h.got = append(h.got, hookDelivery{b, r.Header.Get(webhook.SignatureHeader), r.Header.Get(webhook.TimestampHeader),
			r.Header.Get(webhook.EventHeader), r.Header.Get(webhook.DeliveryHeader)})
		h.mu.Unlock()
		if n < len(h.fail) && h.fail[n] {
			http.Error(w, "not now", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookReceiver) deliveries() []hookDelivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookDelivery(nil), h.got...)
}

// verify checks a delivery's signature and returns its payload.
func verify(t *testing.T, d hookDelivery, secret string) webhook.Payload {
	t.Helper()
	if want := webhook.Sign([]byte(secret), d.timestamp, d.body); !hmac.Equal([]byte(d.signature), []byte(want)) || !strings.HasPrefix(d.signature, "sha256=") {
		t.Fatalf("signature %q, want %q", d.signature, want)
	}
	// The receiver's check, as the README gives it: the timestamp is near
	// its clock and the signature covers "<timestamp>.<body>".
	ts, err := strconv.ParseInt(d.timestamp, 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > 5*time.Minute {
		t.Fatalf("timestamp %q is not a recent Unix time", d.timestamp)
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(d.timestamp + "." + string(d.body)))
	if d.signature != "sha256="+hex.EncodeToString(m.Sum(nil)) {
		t.Fatalf("signature %q does not cover timestamp.body", d.signature)
	}
	if d.event != "run.ended" || d.delivery == "" {
		t.Fatalf("event %q delivery %q", d.event, d.delivery)
	}
	var p webhook.Payload
	if err := json.Unmarshal(d.body, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// ledgerCount is how many rows of token the ledger has recorded.
func (e *env) ledgerCount(token string) int {
	e.t.Helper()
	n, err := ledger.Ledger{Pool: e.db.Pool}.Count(context.Background(), token)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// dueNow makes every entry of set due now, as time passing would.
func (e *env) dueNow(set sidekiq.SetName) {
	e.t.Helper()
	entries, err := e.api.SetEntries(context.Background(), set, 0, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, en := range entries {
		e.db.Do(e.t, "ZADD", string(set), "XX", time.Now().Unix(), en.Raw)
	}
}

// tokenEntries counts entries of the schedule and retry sets that mention token.
func (e *env) tokenEntries(token string, skip ...string) int {
	e.t.Helper()
	n := 0
	for _, set := range []sidekiq.SetName{sidekiq.ScheduledSet, sidekiq.RetrySet} {
		entries, err := e.api.SetEntries(context.Background(), set, 0, 1000)
		if err != nil {
			e.t.Fatal(err)
		}
	next:
		for _, en := range entries {
			for _, s := range skip {
				if strings.Contains(string(en.Raw), s) {
					continue next
				}
			}
			if strings.Contains(string(en.Raw), token) {
				n++
			}
		}
	}
	return n
}

func TestCancelMidRun(t *testing.T) {
	t.Parallel()
	const secret = "s3cret"
	hook := newHookReceiver(t)
	gate := &gateRenderer{free: 2, open: make(chan struct{})}
	e := newEnvWith(t, envOptions{renderers: []render.Renderer{gate}, workers: 3, timeout: time.Second,
		deps: func(d *jobs.Deps) { d.WebhookURL, d.WebhookSecret = hook.URL+"/hook?key=x", secret }})
	ctx := context.Background()
	id, token := e.gatedRun(40, 2)
	if err := e.pipeline.Cancel(ctx, token); err != nil {
		t.Fatal(err)
	}
	st := e.status(token)
	if st.RunState() != models.RunCancelled || st.StateReason != jobs.CancelReason || !st.Ended() {
		t.Fatalf("status after cancel: %+v", st)
	}
	rep, _ := e.models.ReportByID(ctx, id)
	if rep.Status != models.ReportFailed || rep.ErrorMessage != "cancelled by user" {
		t.Fatalf("report after cancel: %+v", rep)
	}
	if n := e.redisInt("LLEN", "queue:"+e.queue(token)); n != 0 {
		t.Errorf("%d jobs left on the token queue", n)
	}
	if n := e.tokenEntries(token, contract.CancelCleanup.Name); n != 0 {
		t.Errorf("%d scheduled or retrying jobs of the token left", n)
	}
	if e.stoppedCount() != 1 {
		t.Errorf("worker stops: %d, want 1", e.stoppedCount())
	}
	if left := e.rowFiles(token); len(left) != 0 {
		t.Errorf("row files left: %v", left)
	}
	if err := e.pipeline.Cancel(ctx, token); !errors.Is(err, contract.ErrRunEnded) {
		t.Errorf("second cancel: %v, want ErrRunEnded", err)
	}

	// The rows that were running finish now: they move nothing.
	before := e.status(token)
	close(gate.open)
	waitFor(t, 20*time.Second, "the running rows to end", func() bool {
		return e.ledgerCount(token) >= 5
	})
	e.stopWorker(e.queue(token)) // its shutdown gives nothing back: the queue was purged
	after := e.status(token)
	if after.RunState() != models.RunCancelled || after.DoneCount != before.DoneCount || after.FailedCount != before.FailedCount {
		t.Errorf("late rows moved the run: before %+v after %+v", before, after)
	}
	if rep, _ := e.models.ReportByID(ctx, id); rep.Status != models.ReportFailed || e.completedMarks.Load() != 0 {
		t.Errorf("a cancelled run was finalized: %+v", rep)
	}
	if len(e.rowFiles(token)) == 0 {
		t.Log("no late row files (the rows ended before their commit)")
	}
	// The second cleanup, made due now, removes what the late rows stored.
	e.dueNow(sidekiq.ScheduledSet)
	waitFor(t, 20*time.Second, "the second cleanup", func() bool {
		return len(e.rowFiles(token)) == 0 && e.tokenEntries(token) == 0
	})

	// The webhook was called once, signed, with the final state.
	waitFor(t, 20*time.Second, "the webhook", func() bool { return len(hook.deliveries()) == 1 })
	p := verify(t, hook.deliveries()[0], secret)
	if p.Token != token || p.State != "cancelled" || p.Reason != jobs.CancelReason || p.ReportID != id || p.EndedAt == nil || p.DownloadPath != "" {
		t.Errorf("payload %+v", p)
	}
	// The finalizer or the supervisor calling again pushes nothing (the
	// report worker is stopped, so a push would stay on its queue).
	e.stopWorker("report")
	e.pipeline.RunEndedForTest(ctx, token)
	if n := e.redisInt("LLEN", "queue:"+webhook.Queue); n != 0 || len(hook.deliveries()) != 1 {
		t.Errorf("a second delivery: %d queued, %d delivered", n, len(hook.deliveries()))
	}
}

func TestCancelBeforeSplit(t *testing.T) {
	t.Parallel()
	hook := newHookReceiver(t, true) // the first delivery fails
	e := newEnvWith(t, envOptions{deps: func(d *jobs.Deps) { d.WebhookURL, d.WebhookSecret = "http://127.0.0.1:1/unused", "k" }})
	ctx := context.Background()
	token := router.NewToken()
	rep := models.ClientReport{Token: token, WebhookURL: hook.URL} // the upload's own URL wins
	if err := e.models.CreateReport(ctx, &rep); err != nil {
		t.Fatal(err)
	}
	j, err := jobs.NewSplitJob(sidekiq.Dialect8, contract.SourceRef{SourceKey: "uploads/" + token + ".csv", Token: token}, "text", rep.ID)
	if err != nil {
		t.Fatal(err)
	}
	j.At = time.Now().Add(time.Hour)
	if _, err := e.client.Push(ctx, j); err != nil {
		t.Fatal(err)
	}
	if err := e.pipeline.Cancel(ctx, token); err != nil {
		t.Fatal(err)
	}
	if n := e.tokenEntries(token, contract.CancelCleanup.Name, contract.Webhook.Name); n != 0 {
		t.Errorf("the SplitCsvJob is still scheduled (%d entries)", n)
	}
	if st := e.status(token); st.RunState() != models.RunCancelled {
		t.Errorf("status %+v", st)
	}
	if err := e.pipeline.Cancel(ctx, router.NewToken()); !errors.Is(err, models.ErrNotFound) {
		t.Errorf("cancel of an unknown token: %v", err)
	}
	// The failed delivery is retried by Sidekiq, same delivery, same body.
	waitFor(t, 20*time.Second, "the first delivery", func() bool { return len(hook.deliveries()) == 1 })
	waitFor(t, 20*time.Second, "the retry", func() bool {
		e.dueNow(sidekiq.RetrySet)
		return len(hook.deliveries()) == 2
	})
	d := hook.deliveries()
	if d[0].delivery != d[1].delivery || string(d[0].body) != string(d[1].body) {
		t.Errorf("retry differs: %+v vs %+v", d[0], d[1])
	}
	if p := verify(t, d[1], "k"); p.State != "cancelled" || p.Token != token {
		t.Errorf("payload %+v", p)
	}
}

func TestValidWebhookURL(t *testing.T) {
	for _, ok := range []string{"http://example.com/x", "https://h:8443/p?q=1"} {
		if err := contract.ValidWebhookURL(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ftp://x/y", "javascript:alert(1)", "/relative", "http://", "https://user:pw@h/", "http//x"} {
		if err := contract.ValidWebhookURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
