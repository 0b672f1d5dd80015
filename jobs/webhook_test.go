package jobs_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/egress"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/run/webhook"
	"github.com/pallarel/pallarel/sidekiq"
)

// listenOn starts h on addr (e.g. 127.0.0.2:0) and returns its URL.
func listenOn(t *testing.T, addr string, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	return s.URL
}

// rows is a CSV of n rows.
func rows(n int) string {
	var b strings.Builder
	b.WriteString("id,name\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "W-%04d,n%d\n", i, i)
	}
	return b.String()
}

// A run's webhook on 127.0.0.2 is refused at dial time, and the retry set
// says only that the delivery failed (not "connection refused" or what
// answered); listed in WEBHOOK_ALLOW_CIDRS, the same receiver gets the
// signed delivery.
func TestWebhookToAnInwardAddress(t *testing.T) {
	t.Parallel()
	for _, listed := range []bool{false, true} {
		t.Run(fmt.Sprintf("listed=%v", listed), func(t *testing.T) {
			t.Parallel()
			hook := newHookReceiver(t)
			inner := listenOn(t, "127.0.0.2:0", hook.Config.Handler)
			var allow []netip.Prefix
			if listed {
				allow, _ = egress.ParseAllow("127.0.0.2")
			}
			e := newEnvWith(t, envOptions{deps: func(d *jobs.Deps) {
				d.WebhookURL, d.WebhookSecret, d.WebhookEgress = inner+"/hook", "k", egress.Policy{Allow: allow}
			}})
			id := e.newReport(models.ReportTypeXLSX)
			e.split(rows(3), "text", id)
			e.completed(id, 30*time.Second)
			if listed {
				waitFor(t, 20*time.Second, "the delivery", func() bool { return len(hook.deliveries()) == 1 })
				if p := verify(t, hook.deliveries()[0], "k"); p.State != "completed" {
					t.Errorf("payload %+v", p)
				}
				return
			}
			var msg string
			waitFor(t, 20*time.Second, "the failed delivery in the retry set", func() bool {
				entries, _ := e.api.SetEntries(context.Background(), sidekiq.RetrySet, 0, 10)
				for _, en := range entries {
					if j, err := sidekiq.ParseJob(en.Raw); err == nil && j.Class == contract.Webhook.Name {
						_, _ = j.Field("error_message", &msg)
						return true
					}
				}
				return false
			})
			if len(hook.deliveries()) != 0 {
				t.Fatal("the inward receiver was reached")
			}
			if msg != "webhook delivery failed (the cause is in the server log)" {
				t.Errorf("retry set error_message %q tells what answered", msg)
			}
		})
	}
}

// Receivers that never answer leave a split's latency as it was: the
// deliveries wait on their own queue with their own few processors, and
// time out after 5 s. Measured in one test: a 50-row run alone, then with
// every webhook processor held by a hanging receiver and more deliveries
// queued behind them.
func TestHangingWebhookDoesNotDelaySplits(t *testing.T) {
	t.Parallel()
	var hanging atomic.Int32
	release := make(chan struct{})
	hook := listenOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hanging.Add(1)
		defer hanging.Add(-1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	e := newEnvWith(t, envOptions{deps: func(d *jobs.Deps) { d.WebhookURL = hook + "/hang" }})
	t.Cleanup(func() { close(release) }) // first: the workers and the receiver then stop
	run := func(n int) time.Duration {
		start := time.Now()
		id := e.newReport(models.ReportTypeXLSX)
		e.split(rows(n), "text", id)
		e.completed(id, 60*time.Second)
		return time.Since(start)
	}
	alone := run(50)
	for range 3 * webhook.Concurrency {
		run(2)
	}
	waitFor(t, 20*time.Second, "every webhook processor held", func() bool { return hanging.Load() >= webhook.Concurrency })
	if n := e.redisInt("LLEN", "queue:"+webhook.Queue); n == 0 {
		t.Fatal("no delivery waits behind the hanging ones: the test proves nothing")
	}
	beside := run(50)
	if held := hanging.Load(); held < webhook.Concurrency {
		t.Fatalf("only %d deliveries hung through the measured run", held)
	}
	t.Logf("50-row run alone %s, beside %d hanging deliveries %s", alone, webhook.Concurrency, beside)
	if beside > 3*alone+2*time.Second {
		t.Errorf("a split beside hanging webhooks took %s, alone %s", beside, alone)
	}
}
