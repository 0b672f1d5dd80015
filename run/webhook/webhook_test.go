package webhook_test

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/egress"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/models/modelstest"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/run/webhook"
	"github.com/pallarel/pallarel/sidekiq"
)

// receiver records what it is sent and answers status.
type receiver struct {
	mu     sync.Mutex
	got    []*http.Request
	bodies [][]byte
	status int
	url    string
}

func newReceiver(t *testing.T, addr string, status int) *receiver {
	t.Helper()
	r := &receiver{status: status}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got, r.bodies = append(r.got, req), append(r.bodies, b)
		r.mu.Unlock()
		w.WriteHeader(r.status)
	}))
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	r.url = s.URL + "/hook?key=s3cret"
	return r
}

func (r *receiver) count() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.got) }

// bundle is one test's notifier on its own Redis database and SQLite file,
// with the jobs it pushed.
type bundle struct {
	runs   *models.Store
	n      *webhook.Notifier
	mu     sync.Mutex
	pushed []contract.Job
}

func setup(t *testing.T, allow ...string) *bundle {
	t.Helper()
	b := &bundle{runs: models.NewStore(modelstest.SQLite(t))}
	var prefixes []netip.Prefix
	for _, a := range allow {
		prefixes = append(prefixes, netip.MustParsePrefix(a))
	}
	var err error
	b.n, err = webhook.New(webhook.Params{
		Runs: b.runs, Pool: redistest.New(t).Pool, Secret: "hook-secret",
		Push: func(_ context.Context, j contract.Job) error {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.pushed = append(b.pushed, j)
			return nil
		},
		Egress: egress.Policy{Allow: prefixes},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// endedRun records a run with a webhook URL that ended failed.
func (b *bundle) endedRun(t *testing.T, url string) string {
	t.Helper()
	ctx := context.Background()
	token := router.NewToken()
	rep := models.ClientReport{ReportType: models.ReportTypeXLSX, WebhookURL: url}
	if err := b.runs.CreateReport(ctx, &rep); err != nil {
		t.Fatal(err)
	}
	if _, err := b.runs.CreateStatus(ctx, token, router.QueueName(token), 3); err != nil {
		t.Fatal(err)
	}
	if err := b.runs.MarkReportProcessing(ctx, rep.ID, token); err != nil {
		t.Fatal(err)
	}
	if won, err := b.runs.EndRun(ctx, token, models.RunFailed, "the CSV could not be read"); err != nil || !won {
		t.Fatalf("EndRun: %v %v", won, err)
	}
	return token
}

// job is the pushed delivery as a worker fetches it.
func job(t *testing.T, c contract.Job) *sidekiq.Job {
	t.Helper()
	j, err := sidekiq.NewJob(c.Class.Name, c.Args...)
	if err != nil {
		t.Fatal(err)
	}
	j.Queue = c.Queue
	return j
}

// An ended run is enqueued once however often it is told, and its
// delivery reaches the receiver signed over "<timestamp>.<body>", with the
// run's end in the body.
func TestNotifierDeliversOncePerEndSigned(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, "127.0.0.1:0", http.StatusNoContent)
	b := setup(t, "127.0.0.1/32")
	token := b.endedRun(t, rcv.url)
	ctx := context.Background()
	for range 3 {
		if err := b.n.Enqueue(ctx, token); err != nil {
			t.Fatal(err)
		}
	}
	if len(b.pushed) != 1 {
		t.Fatalf("%d deliveries enqueued for one end, want 1", len(b.pushed))
	}
	if c := b.pushed[0]; c.Class.Name != contract.Webhook.Name || c.Queue != webhook.Queue {
		t.Fatalf("pushed %s on %s", c.Class.Name, c.Queue)
	}
	j := job(t, b.pushed[0])
	if err := b.n.Deliver(ctx, j); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if rcv.count() != 1 {
		t.Fatalf("receiver got %d requests", rcv.count())
	}
	req, body := rcv.got[0], rcv.bodies[0]
	ts := req.Header.Get(webhook.TimestampHeader)
	if sec, err := strconv.ParseInt(ts, 10, 64); err != nil || time.Since(time.Unix(sec, 0)) > time.Minute {
		t.Errorf("timestamp %q", ts)
	}
	if want := webhook.Sign([]byte("hook-secret"), ts, body); !hmac.Equal([]byte(req.Header.Get(webhook.SignatureHeader)), []byte(want)) {
		t.Errorf("signature %q, want %q", req.Header.Get(webhook.SignatureHeader), want)
	}
	if req.Header.Get(webhook.DeliveryHeader) != j.JID || req.Header.Get(webhook.EventHeader) != webhook.Event {
		t.Errorf("headers: %v", req.Header)
	}
	var p webhook.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Token != token || p.State != models.RunFailed || p.Reason != "the CSV could not be read" || p.DownloadPath != "" || p.EndedAt == nil {
		t.Errorf("payload %+v", p)
	}
}

// A receiver on an address the policy does not list is never reached, and
// the error kept in the retry set says only that the delivery failed; a
// receiver that answers non-2xx fails the delivery the same way.
func TestDeliverFailuresSayNothingOfTheReceiver(t *testing.T) {
	t.Parallel()
	inward := newReceiver(t, "127.0.0.2:0", http.StatusOK)
	refusing := newReceiver(t, "127.0.0.1:0", http.StatusBadGateway)
	b := setup(t, "127.0.0.1/32")
	ctx := context.Background()
	for _, rcv := range []*receiver{inward, refusing} {
		err := b.n.Deliver(ctx, job(t, contract.WebhookJob(rcv.url, `{"event":"run.ended"}`)))
		if !errors.Is(err, webhook.ErrFailed) || err.Error() != webhook.ErrFailed.Error() {
			t.Errorf("%s: %v, want only %v", rcv.url, err, webhook.ErrFailed)
		}
	}
	if inward.count() != 0 {
		t.Errorf("the receiver on 127.0.0.2 was reached %d times", inward.count())
	}
	if refusing.count() != 1 {
		t.Errorf("the 502 receiver got %d requests, want 1", refusing.count())
	}
}
