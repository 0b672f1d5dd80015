package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq"
)

// seedSidekiq arranges what the dashboard shows: an ActiveJob job and a
// plain job in queues, one entry in each sorted set, and a live process
// running a job (a heartbeat hash as Sidekiq writes it).
func seedSidekiq(t *testing.T, b *bundle) (identity string, keys map[string]string) {
	t.Helper()
	ctx := context.Background()
	aj, err := sidekiq.NewActiveJob(sidekiq.Dialect8, "SplitCsvJob", "report", "a,b\n1,2\n", "xlsx", 7)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.srv.d.Client.Push(ctx, aj); err != nil {
		t.Fatal(err)
	}
	row, _ := sidekiq.NewJob("Report::ProcessCsvRowJob", map[string]string{"保険者名": "東京"}, "xlsx", 7, "/tmp/reports/x", "tok")
	row.Queue = "report-0123456789abcdef"
	if _, err := b.srv.d.Client.Push(ctx, row); err != nil {
		t.Fatal(err)
	}
	keys = map[string]string{}
	for i, set := range []string{"retry", "schedule", "dead"} {
		jid := fmt.Sprintf("%024x", i+1)
		score := float64(time.Now().Unix()-100) + 0.25 + float64(i)
		payload := fmt.Sprintf(`{"class":"Report::FinalizeReportJob","queue":"report-0123456789abcdef","jid":%q,"args":["/tmp/x","xlsx",7,"tok"],"retry":3,"retry_count":2,"error_class":"RuntimeError","error_message":"boom in %s","created_at":1700000000000}`, jid, set)
		b.redis.Do(t, "ZADD", set, score, payload)
		keys[set] = fmt.Sprintf("%s-%s", strings.TrimRight(strings.TrimRight(fmt.Sprintf("%f", score), "0"), "."), jid)
	}
	identity = "worker-host:4242:0123abcd"
	info := `{"hostname":"worker-host","started_at":1700000000.5,"pid":4242,"tag":"report","concurrency":10,"queues":["report-0123456789abcdef"],"labels":[],"identity":"worker-host:4242:0123abcd","version":"8.0.6"}`
	b.redis.Do(t, "SADD", "processes", identity)
	b.redis.Do(t, "HSET", identity, "info", info, "busy", 1, "beat", float64(time.Now().Unix()), "quiet", "false", "rss", 123456)
	work, _ := json.Marshal(map[string]any{"queue": "report-0123456789abcdef", "payload": `{"class":"Sidekiq::ActiveJob::Wrapper","wrapped":"IdleShutdownJob","queue":"report-0123456789abcdef","jid":"feedfacefeedfacefeedface","args":[{"job_class":"IdleShutdownJob","arguments":["tok"]}]}`, "run_at": time.Now().Unix()})
	b.redis.Do(t, "HSET", identity+":work", "tid-1", work)
	return identity, keys
}

func TestDashboardPages(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	identity, keys := seedSidekiq(t, b)
	b.redis.Do(t, "SET", "stat:processed", 1234)
	b.redis.Do(t, "SET", "stat:processed:"+time.Now().UTC().Format("2006-01-02"), 77)
	pages := map[string][]string{
		"/sidekiq":               {`id="processed">1234<`, "<svg", "77", "report-0123456789abcdef"},
		"/sidekiq/busy":          {"worker-host:4242", "report", "123456", "1 / 10", identity, "IdleShutdownJob", "feedfacefeedfacefeedface", `&#34;tok&#34;`, `value="quiet"`, `value="stop"`},
		"/sidekiq/queues":        {"report-0123456789abcdef", `href="/sidekiq/queues/report"`},
		"/sidekiq/queues/report": {"SplitCsvJob", `&#34;xlsx&#34;`, `name="key_val"`},
		"/sidekiq/queues/report-0123456789abcdef": {"Report::ProcessCsvRowJob", "東京"},
		"/sidekiq/retries":                        {keys["retry"], "boom in retry", "RuntimeError", "Report::FinalizeReportJob", `value="kill"`},
		"/sidekiq/scheduled":                      {keys["schedule"], "Add to queue"},
		"/sidekiq/morgue":                         {keys["dead"], "boom in dead"},
	}
	for path, wants := range pages {
		resp, body := b.get(t, path)
		wantStatus(t, resp, body, http.StatusOK)
		for _, w := range wants {
			if !strings.Contains(body, w) {
				t.Errorf("%s lacks %q", path, w)
			}
		}
		if !strings.Contains(body, `name="authenticity_token"`) && path != "/sidekiq" {
			t.Errorf("%s has no CSRF field", path)
		}
	}
	if _, body := b.get(t, "/sidekiq/morgue"); strings.Contains(body, `value="kill"`) {
		t.Error("dead entries offer Kill")
	}
}

func zcard(t *testing.T, b *bundle, key string) int {
	t.Helper()
	n, _ := redis.Int(b.redis.Do(t, "ZCARD", key), nil)
	return n
}

func llen(t *testing.T, b *bundle, key string) int {
	t.Helper()
	n, _ := redis.Int(b.redis.Do(t, "LLEN", key), nil)
	return n
}

func TestDashboardActions(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	identity, keys := seedSidekiq(t, b)
	_, page := b.get(t, "/sidekiq/retries")
	tok := csrfToken(t, page)
	q := "queue:report-0123456789abcdef"
	post := func(path string, kv ...string) (*http.Response, string) {
		return b.do(t, http.MethodPost, path, form(kv...), "Content-Type", "application/x-www-form-urlencoded")
	}

	// Without the token, or with a wrong one, nothing happens.
	resp, body := post("/sidekiq/retries/"+keys["retry"], "action", "retry")
	wantStatus(t, resp, body, http.StatusForbidden)
	wrong := "0" + tok[1:]
	if tok[0] == '0' {
		wrong = "1" + tok[1:]
	}
	resp, body = post("/sidekiq/retries/"+keys["retry"], "action", "retry", "authenticity_token", wrong)
	wantStatus(t, resp, body, http.StatusForbidden)
	if zcard(t, b, "retry") != 1 {
		t.Fatal("a POST without a valid CSRF token changed Redis")
	}

	// Retry now: the entry moves to its queue.
	resp, body = post("/sidekiq/retries/"+keys["retry"], "action", "retry", "authenticity_token", tok)
	wantStatus(t, resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/sidekiq/retries" {
		t.Errorf("redirect to %q", loc)
	}
	if zcard(t, b, "retry") != 0 || llen(t, b, q) != 2 {
		t.Errorf("after retry: retry=%d queue=%d", zcard(t, b, "retry"), llen(t, b, q))
	}
	// Gone now: 404.
	resp, body = post("/sidekiq/retries/"+keys["retry"], "action", "retry", "authenticity_token", tok)
	wantStatus(t, resp, body, http.StatusNotFound)

	// Kill a scheduled job: it moves to the dead set.
	resp, body = post("/sidekiq/scheduled/"+keys["schedule"], "action", "kill", "authenticity_token", tok)
	wantStatus(t, resp, body, http.StatusSeeOther)
	if zcard(t, b, "schedule") != 0 || zcard(t, b, "dead") != 2 {
		t.Errorf("after kill: schedule=%d dead=%d", zcard(t, b, "schedule"), zcard(t, b, "dead"))
	}
	// Delete a dead job.
	resp, body = post("/sidekiq/morgue/"+keys["dead"], "action", "delete", "authenticity_token", tok)
	wantStatus(t, resp, body, http.StatusSeeOther)
	if zcard(t, b, "dead") != 1 {
		t.Errorf("after delete: dead=%d", zcard(t, b, "dead"))
	}
	// Kill is refused on the dead set.
	resp, body = post("/sidekiq/morgue", "action", "kill_all", "authenticity_token", tok)
	wantStatus(t, resp, body, http.StatusBadRequest)
	// Retry all from the dead set.
	resp, body = post("/sidekiq/morgue", "action", "retry_all", "authenticity_token", tok)
	wantStatus(t, resp, body, http.StatusSeeOther)
	if zcard(t, b, "dead") != 0 || llen(t, b, q) != 3 {
		t.Errorf("after retry all: dead=%d queue=%d", zcard(t, b, "dead"), llen(t, b, q))
	}
	// Delete all.
	b.redis.Do(t, "ZADD", "retry", 1, `{"class":"X","queue":"default","jid":"aaaaaaaaaaaaaaaaaaaaaaaa","args":[]}`)
	resp, body = post("/sidekiq/retries", "action", "delete_all", "authenticity_token", tok)
	wantStatus(t, resp, body, http.StatusSeeOther)
	if zcard(t, b, "retry") != 0 {
		t.Error("delete all left entries")
	}

	// Quiet and Stop reach the process through its signal list.
	for _, a := range []struct{ action, sig string }{{"quiet", "TSTP"}, {"stop", "TERM"}} {
		resp, body = post("/sidekiq/busy", "identity", identity, "action", a.action, "authenticity_token", tok)
		wantStatus(t, resp, body, http.StatusSeeOther)
		got, _ := redis.String(b.redis.Do(t, "LINDEX", identity+"-signals", 0), nil)
		if got != a.sig {
			t.Errorf("%s: signal list head = %q, want %s", a.action, got, a.sig)
		}
	}

	// Delete one queued job by its payload, then clear the queue.
	_, qpage := b.get(t, "/sidekiq/queues/report-0123456789abcdef")
	raw := strings.NewReplacer("&#34;", `"`, "&amp;", "&", "&lt;", "<", "&gt;", ">", "&#39;", "'").Replace(
		strings.SplitN(strings.SplitN(qpage, `name="key_val" value="`, 2)[1], `"`, 2)[0])
	resp, body = post("/sidekiq/queues/report-0123456789abcdef/delete", "key_val", raw, "authenticity_token", tok)
	wantStatus(t, resp, body, http.StatusSeeOther)
	if llen(t, b, q) != 2 {
		t.Errorf("after delete job: queue=%d", llen(t, b, q))
	}
	resp, body = post("/sidekiq/queues/report-0123456789abcdef", "action", "clear", "authenticity_token", tok)
	wantStatus(t, resp, body, http.StatusSeeOther)
	if llen(t, b, q) != 0 {
		t.Error("clear left jobs")
	}
	if ok, _ := redis.Bool(b.redis.Do(t, "SISMEMBER", "queues", "report-0123456789abcdef"), nil); ok {
		t.Error("cleared queue still listed")
	}
}
