// Package webhook tells a receiver that a run ended: Notifier.RunEnded
// enqueues one signed delivery per end (Pallarel::RunWebhookJob on the
// webhook queue), and Notifier.Deliver, that job's handler, POSTs it
// through an egress policy checked at dial time.
//
// It reads the run from models, marks deliveries in Redis, and pushes
// through the function its owner gives; it does not import jobs.
package webhook

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/egress"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/sidekiq"
)

// Queue is the deliveries' own queue: a receiver that hangs holds one of
// Concurrency processors for Timeout, never one that splits uploads. The
// workers that serve the report queue serve it too, on a server of their
// own.
const (
	Queue       = contract.WebhookQueue
	Concurrency = 5
	// Timeout bounds one delivery attempt.
	Timeout = 5 * time.Second
)

// Headers: the HMAC-SHA256 with WEBHOOK_SECRET of "<timestamp>.<body>" as
// "sha256=<hex>", the timestamp (Unix seconds) it signs, the event name,
// and the delivery id (the job's jid, the same on every retry). A receiver
// rejects a timestamp far from its clock, so a captured delivery cannot be
// replayed later.
const (
	SignatureHeader = "X-Pallarel-Signature"
	TimestampHeader = "X-Pallarel-Timestamp"
	EventHeader     = "X-Pallarel-Event"
	DeliveryHeader  = "X-Pallarel-Delivery"
	Event           = "run.ended"
)

// ErrFailed is what a failed delivery stores in the retry set, shown on
// /sidekiq: one message whatever happened (refused, unreachable, timed out,
// a non-2xx answer), so a webhook URL cannot map what answers inside; the
// cause is in the log.
var ErrFailed = errors.New("webhook delivery failed (the cause is in the server log)")

// Payload is the JSON body a receiver gets once per run end.
type Payload struct {
	Event       string     `json:"event"` // "run.ended"
	Token       string     `json:"token"`
	ReportID    int64      `json:"report_id,omitempty"`
	State       string     `json:"state"` // completed, failed or cancelled
	Reason      string     `json:"reason,omitempty"`
	TotalCount  int        `json:"total_count"`
	DoneCount   int        `json:"done_count"`
	FailedCount int        `json:"failed_count"`
	EndedAt     *time.Time `json:"ended_at"`
	StatusPath  string     `json:"status_path"`
	// DownloadPath is set for a completed run: GET it (on the server that
	// took the upload) for the ZIP.
	DownloadPath string `json:"download_path,omitempty"`
}

// Sign is the signature header value for body sent at timestamp (the
// X-Pallarel-Timestamp value, Unix seconds): "sha256=" and the hex
// HMAC-SHA256 of "<timestamp>.<body>" with secret. A receiver recomputes it
// over the header's timestamp and the raw body, compares in constant time,
// and rejects a timestamp more than a few minutes from its clock.
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Runs is what the notifier reads of a run (models.Store has it).
type Runs interface {
	StatusByToken(ctx context.Context, token string) (models.CsvProcessingStatus, error)
	ReportByToken(ctx context.Context, token string) (models.ClientReport, error)
}

// Params builds a Notifier.
type Params struct {
	Runs Runs
	// Pool holds the once-per-end markers (contract.WebhookSentKey).
	Pool *redis.Pool
	// Push enqueues a job of the contract (the owner's client, dialect
	// and middleware).
	Push func(ctx context.Context, j contract.Job) error
	// URL (WEBHOOK_URL) is called unless the upload gave its own; Secret
	// (WEBHOOK_SECRET) signs the deliveries. Both optional.
	URL    string
	Secret string
	// Egress decides which addresses deliveries may reach; the zero
	// policy allows public addresses only. Proxy (WEBHOOK_PROXY) carries
	// them; nil: none, whatever HTTP_PROXY says.
	Egress egress.Policy
	Proxy  *url.URL
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Notifier enqueues and delivers run-end webhooks.
type Notifier struct {
	p    Params
	http *http.Client
}

// New builds a Notifier; Runs, Pool and Push are required.
func New(p Params) (*Notifier, error) {
	if p.Runs == nil || p.Pool == nil || p.Push == nil {
		return nil, errors.New("webhook: Runs, Pool and Push are required")
	}
	p.Logger = cmp.Or(p.Logger, slog.Default())
	if p.Now == nil {
		p.Now = time.Now
	}
	// Connects only where the egress policy allows, and follows no
	// redirect: a signed delivery goes to the configured URL, nowhere else.
	return &Notifier{p: p, http: p.Egress.Client(egress.ClientOptions{Timeout: Timeout, Proxy: p.Proxy})}, nil
}

// RunEnded is called once a run has ended (completed, failed or
// cancelled): it enqueues the delivery when the run has a webhook (its
// own, given with the upload, or URL), once per end: a run reopened by a
// retry of its failed rows and ended again is delivered again. Errors are
// logged: the run has ended whatever the webhook does.
func (n *Notifier) RunEnded(ctx context.Context, token string) {
	if err := n.Enqueue(ctx, token); err != nil {
		n.p.Logger.Error("enqueue run webhook", "token", token, "err", err)
	}
}

// Enqueue is RunEnded's work, with its error.
func (n *Notifier) Enqueue(ctx context.Context, token string) error {
	st, err := n.p.Runs.StatusByToken(ctx, token)
	if err != nil {
		return err
	}
	if !st.Ended() {
		return fmt.Errorf("run %s has not ended", token)
	}
	var rep models.ClientReport
	if r, err := n.p.Runs.ReportByToken(ctx, token); err == nil {
		rep = r
	} else if !errors.Is(err, models.ErrNotFound) {
		return err
	}
	target := cmp.Or(rep.WebhookURL, n.p.URL)
	if target == "" {
		return nil
	}
	ended := st.EndedAt
	if ended == nil {
		ended = st.FinalizedAt
	}
	// One delivery per end: the marker holds the end last delivered, by
	// its finalized_at, which is claimed once per end (a retry clears it),
	// while ended_at is written a moment later: two callers either side
	// of that write must not deliver twice.
	var mark string
	if st.FinalizedAt != nil {
		mark = strconv.FormatInt(st.FinalizedAt.UnixMicro(), 10)
	}
	first, err := n.markOnce(ctx, contract.WebhookSentKey(token), mark)
	if err != nil || !first {
		return err
	}
	body := Payload{
		Event: Event, Token: token, ReportID: rep.ID, State: endState(st, rep), Reason: st.StateReason,
		TotalCount: st.TotalCount, DoneCount: st.DoneCount, FailedCount: st.FailedCount, EndedAt: ended,
		StatusPath: "/csv_processing/" + token,
	}
	if body.State == models.RunCompleted {
		body.DownloadPath = body.StatusPath + "/download"
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	if err := n.p.Push(ctx, contract.WebhookJob(target, string(b))); err != nil {
		return fmt.Errorf("push %s for %s: %w", contract.Webhook.Name, token, err)
	}
	return nil
}

// endState is how an ended run ended: its recorded state, or, when its
// finalizer left the running state it found, what its report says.
func endState(st models.CsvProcessingStatus, rep models.ClientReport) string {
	switch s := st.RunState(); s {
	case models.RunCompleted, models.RunFailed, models.RunCancelled:
		return s
	}
	if rep.Status == models.ReportFailed {
		return models.RunFailed
	}
	return models.RunCompleted
}

// markOnce sets key to value unless it holds value already, and reports
// whether it did (kept 30 days).
func (n *Notifier) markOnce(ctx context.Context, key, value string) (bool, error) {
	c, err := n.p.Pool.GetContext(ctx)
	if err != nil {
		return false, fmt.Errorf("mark %s: %w", key, err)
	}
	defer c.Close()
	// GETSET rather than SET ... GET: the embedded fallback speaks it too.
	_ = c.Send("MULTI")
	_ = c.Send("GETSET", key, value)
	_ = c.Send("EXPIRE", key, 30*24*3600)
	vals, err := redis.Values(c.Do("EXEC"))
	if err == nil && len(vals) != 2 {
		err = errors.New("unexpected Redis reply")
	}
	if err != nil {
		return false, fmt.Errorf("mark %s: %w", key, err)
	}
	old, err := redis.String(vals[0], nil)
	if err != nil && !errors.Is(err, redis.ErrNil) {
		return false, fmt.Errorf("mark %s: %w", key, err)
	}
	return errors.Is(err, redis.ErrNil) || old != value, nil
}

// Deliver is Pallarel::RunWebhookJob's handler: [url, body]. It POSTs the
// body to the URL, signed, and fails (to be retried with Sidekiq's backoff)
// unless the receiver answers 2xx. Every address it connects to passes the
// egress policy at dial time.
func (n *Notifier) Deliver(ctx context.Context, job *sidekiq.Job) error {
	var target, body string
	if err := job.ScanArgs(&target, &body); err != nil {
		return err
	}
	if err := contract.ValidWebhookURL(target); err != nil {
		return sidekiq.Kill(err)
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader([]byte(body)))
	if err != nil {
		return sidekiq.Kill(fmt.Errorf("webhook request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Pallarel-Webhook")
	req.Header.Set(EventHeader, Event)
	req.Header.Set(DeliveryHeader, job.JID)
	if n.p.Secret != "" {
		ts := strconv.FormatInt(n.p.Now().Unix(), 10)
		req.Header.Set(TimestampHeader, ts)
		req.Header.Set(SignatureHeader, Sign([]byte(n.p.Secret), ts, []byte(body)))
	}
	log := n.p.Logger.With("url", redactURL(target), "jid", job.JID)
	resp, err := n.http.Do(req)
	if err != nil {
		var ue *url.Error // its text repeats the URL, query and all
		if errors.As(err, &ue) {
			err = ue.Err
		}
		log.Warn("run webhook not delivered", "err", err, "refused", errors.Is(err, egress.ErrRefused))
		return ErrFailed
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		log.Warn("run webhook not delivered", "status", resp.StatusCode)
		return ErrFailed
	}
	log.Info("run webhook delivered", "status", resp.StatusCode)
	return nil
}

// redactURL drops the query, which may hold a receiver's secret, from logs
// and error messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(bad url)"
	}
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}
