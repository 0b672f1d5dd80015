package jobs

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

// WebhookQueue is the deliveries' own queue: a receiver that hangs holds
// one of WebhookConcurrency processors for webhookTimeout, never one that
// splits uploads. The workers that serve the report queue serve it too, on
// a server of their own (WebhookServerOptions).
const (
	WebhookQueue       = contract.WebhookQueue
	WebhookConcurrency = 5
)

// Webhook headers: the HMAC-SHA256 with WEBHOOK_SECRET of
// "<timestamp>.<body>" as "sha256=<hex>", the timestamp (Unix seconds) it
// signs, the event name, and the delivery id (the job's jid, the same on
// every retry). A receiver rejects a timestamp far from its clock, so a
// captured delivery cannot be replayed later.
const (
	WebhookSignatureHeader = "X-Pallarel-Signature"
	WebhookTimestampHeader = "X-Pallarel-Timestamp"
	WebhookEventHeader     = "X-Pallarel-Event"
	WebhookDeliveryHeader  = "X-Pallarel-Delivery"
	webhookEvent           = "run.ended"
	webhookTimeout         = 5 * time.Second
)

// errWebhookFailed is what a failed delivery stores in the retry set, shown
// on /sidekiq: one message whatever happened (refused, unreachable, timed
// out, a non-2xx answer), so a webhook URL cannot map what answers inside;
// the cause is in the server log.
var errWebhookFailed = errors.New("webhook delivery failed (the cause is in the server log)")

// WebhookPayload is the JSON body a webhook receives once per run end.
type WebhookPayload struct {
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

// SignWebhook is the signature header value for body sent at timestamp
// (the X-Pallarel-Timestamp value, Unix seconds): "sha256=" and the hex
// HMAC-SHA256 of "<timestamp>.<body>" with secret. A receiver recomputes
// it over the header's timestamp and the raw body, compares in constant
// time, and rejects a timestamp more than a few minutes from its clock.
func SignWebhook(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// runEnded is called once a run has ended (completed, failed or cancelled):
// it enqueues the webhook delivery when the run has a webhook (its own, given
// with the upload, or WEBHOOK_URL). It delivers once per end: a run that is
// reopened by a retry of its failed rows and ends again is delivered again.
// Errors are logged: the run has ended whatever the webhook does.
func (p *Pipeline) runEnded(ctx context.Context, token string) {
	if err := p.enqueueWebhook(ctx, token); err != nil {
		p.log.Error("enqueue run webhook", "token", token, "err", err)
	}
}

func (p *Pipeline) enqueueWebhook(ctx context.Context, token string) error {
	st, err := p.d.DB.StatusByToken(ctx, token)
	if err != nil {
		return err
	}
	if !st.Ended() {
		return fmt.Errorf("run %s has not ended", token)
	}
	var rep models.ClientReport
	if r, err := p.d.DB.ReportByToken(ctx, token); err == nil {
		rep = r
	} else if !errors.Is(err, models.ErrNotFound) {
		return err
	}
	target := rep.WebhookURL
	if target == "" {
		target = p.d.WebhookURL
	}
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
	mark := strconv.FormatInt(st.FinalizedAt.UnixMicro(), 10)
	first, err := p.markOnce(ctx, contract.WebhookSentKey(token), mark)
	if err != nil || !first {
		return err
	}
	body := WebhookPayload{
		Event: webhookEvent, Token: token, ReportID: rep.ID, State: endState(st, rep), Reason: st.StateReason,
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
	j, err := toSidekiq(p.d.Client.Dialect(), contract.WebhookJob(target, string(b)))
	if err != nil {
		return err
	}
	if _, err := p.d.Client.Push(ctx, j); err != nil {
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
func (p *Pipeline) markOnce(ctx context.Context, key, value string) (bool, error) {
	c, err := p.d.Pool.GetContext(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close()
	// GETSET rather than SET ... GET: the embedded fallback speaks it too.
	_ = c.Send("MULTI")
	_ = c.Send("GETSET", key, value)
	_ = c.Send("EXPIRE", key, 30*24*3600)
	vals, err := redis.Values(c.Do("EXEC"))
	if err != nil || len(vals) != 2 {
		return false, fmt.Errorf("mark %s: %w", key, cmp.Or(err, errShortReply))
	}
	old, err := redis.String(vals[0], nil)
	if err != nil && !errors.Is(err, redis.ErrNil) {
		return false, fmt.Errorf("mark %s: %w", key, cmp.Or(err, errShortReply))
	}
	return old != value, nil
}

// handleWebhook POSTs the body to the URL, signed, and fails (to be retried
// with Sidekiq's backoff) unless the receiver answers 2xx: [url, body].
// Every address it connects to passes the egress policy at dial time.
func (p *Pipeline) handleWebhook(ctx context.Context, job *sidekiq.Job) error {
	var target, body string
	if err := job.ScanArgs(&target, &body); err != nil {
		return err
	}
	if err := contract.ValidWebhookURL(target); err != nil {
		return sidekiq.Kill(err)
	}
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader([]byte(body)))
	if err != nil {
		return sidekiq.Kill(fmt.Errorf("webhook request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Pallarel-Webhook")
	req.Header.Set(WebhookEventHeader, webhookEvent)
	req.Header.Set(WebhookDeliveryHeader, job.JID)
	if p.d.WebhookSecret != "" {
		ts := strconv.FormatInt(p.d.Now().Unix(), 10)
		req.Header.Set(WebhookTimestampHeader, ts)
		req.Header.Set(WebhookSignatureHeader, SignWebhook([]byte(p.d.WebhookSecret), ts, []byte(body)))
	}
	log := p.log.With("url", redactURL(target), "jid", job.JID)
	resp, err := p.webhookClient().Do(req)
	if err != nil {
		var ue *url.Error // its text repeats the URL, query and all
		if errors.As(err, &ue) {
			err = ue.Err
		}
		log.Warn("run webhook not delivered", "err", err, "refused", errors.Is(err, egress.ErrRefused))
		return errWebhookFailed
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		log.Warn("run webhook not delivered", "status", resp.StatusCode)
		return errWebhookFailed
	}
	log.Info("run webhook delivered", "status", resp.StatusCode)
	return nil
}

// webhookClient connects only where the egress policy allows, through
// WEBHOOK_PROXY when set (never HTTP_PROXY), and follows no redirect: a
// signed delivery goes to the configured URL, nowhere else.
func (p *Pipeline) webhookClient() *http.Client {
	return p.d.WebhookEgress.Client(egress.ClientOptions{Timeout: webhookTimeout, Proxy: p.d.WebhookProxy})
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
