package chaos

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/router"
)

// hostileOutcome is where a refused job ended and why.
type hostileOutcome struct {
	set, class, message string
}

// outcomeOf finds the job whose payload contains needle in the dead set or
// the retry set.
func (c *cluster) outcomeOf(needle string) (hostileOutcome, bool) {
	for _, set := range []string{"dead", "retry"} {
		jobs, _ := redis.Strings(c.redisDo("ZRANGE", set, 0, -1))
		for _, j := range jobs {
			if !strings.Contains(j, needle) {
				continue
			}
			var f struct {
				Class   string `json:"error_class"`
				Message string `json:"error_message"`
			}
			_ = json.Unmarshal([]byte(j), &f)
			if f.Class == "" && f.Message == "" && !strings.HasPrefix(j, "{") {
				// Sidekiq keeps an unparseable payload as it came.
				f.Message = "unparseable"
			}
			return hostileOutcome{set, f.Class, f.Message}, true
		}
	}
	return hostileOutcome{}, false
}

// A hostile client pushes onto a live run's token queue: bad JSON, a
// 100 MB args payload, nesting deeper than Ruby's JSON allows, and (through
// real Ruby Sidekiq 8's client) an unknown class, wrong argument types and a
// row job naming another token. The bad jobs land before the token worker
// starts, so they are fetched while the run's real rows are still queued,
// some ahead of the rows and some behind. The run completes with every real
// row once and nothing else; the worker lives; each bad job ends in the
// dead or the retry set with an error that says what was wrong.
func TestHostileClientOnTokenQueue(t *testing.T) {
	c := newCluster(t)
	c.worker("report", 2, "report", "default")
	n := sized(300, 5000)
	u := c.upload(makeCSV("H", n), "text")
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		l, _ := redis.Int(c.redisDo("LLEN", "queue:"+u.Queue))
		if l >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the split queued %d of %d rows", l, n)
		}
	}

	other := router.NewToken()
	out := runRubyPeer(t, "8", "testdata/hostile.rb",
		"REDIS_URL="+c.redis.URL(0), "QUEUE="+u.Queue, "TOKEN="+u.Token, "OTHER_TOKEN="+other)
	var rubyJIDs map[string]string
	if err := json.Unmarshal([]byte(out), &rubyJIDs); err != nil {
		t.Fatalf("ruby result %q: %v", out, err)
	}

	// Two of Ruby's jobs move to the front, to run before the real rows;
	// the third stays behind them, to be left over when the run ends.
	for _, name := range []string{"unknown class", "other token"} {
		jobs, _ := redis.Strings(c.redisDo("LRANGE", "queue:"+u.Queue, 0, 10))
		for _, j := range jobs {
			if strings.Contains(j, rubyJIDs[name]) {
				c.redisDo("LREM", "queue:"+u.Queue, 1, j)
				c.redisDo("RPUSH", "queue:"+u.Queue, j)
			}
		}
	}

	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	big := strings.Repeat("x", 100<<20)
	raw := []struct{ name, payload, needle string }{
		{"bad JSON", `{"class":"Report::ProcessCsvRowJob","args":[{"個別識別番号":"BAD-JSON"`, "BAD-JSON"},
		{"deep nesting", `{"class":"Report::ProcessCsvRowJob","args":[{"個別識別番号":` + deep + `},"text",1,"/tmp","` + u.Token + `"],"jid":"deadbeef0000000000000001","queue":"` + u.Queue + `","retry":1}`, "deadbeef0000000000000001"},
		{"100 MB args", `{"class":"Report::ProcessCsvRowJob","args":[{"個別識別番号":"BIG-000001","x":"` + big + `"},"text",1,"/tmp","` + u.Token + `"],"jid":"deadbeef0000000000000002","queue":"` + u.Queue + `","retry":1}`, "deadbeef0000000000000002"},
	}
	for i, r := range raw {
		// Alternate ends: LPUSH runs last, RPUSH runs before the real rows.
		cmd := "LPUSH"
		if i%2 == 0 {
			cmd = "RPUSH"
		}
		if _, err := c.redisDo(cmd, "queue:"+u.Queue, r.payload); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
	}
	big = ""
	if s := c.status(u.Token); s.State == "completed" || s.State == "failed" || s.State == "cancelled" {
		t.Fatalf("the run ended before the hostile jobs ran: %+v", s)
	}
	tw := c.worker("token", 3, u.Queue)

	s := c.waitFinished(u.Token, 120*time.Second)
	if s.State != "completed" {
		t.Fatalf("run: %+v", s)
	}
	r := c.verify(u.Token, "H", n)
	expectIntact(t, r, 0)
	if r.done+r.failed != n || s.TotalCount != n {
		t.Fatalf("the ZIP or the status counts rows that are not the upload's: ZIP %d, total %d, upload %d", r.done+r.failed, s.TotalCount, n)
	}

	want := map[string]struct{ needle, says string }{
		"bad JSON":      {"BAD-JSON", "not valid JSON"},
		"deep nesting":  {"deadbeef0000000000000001", "nested deeper"},
		"100 MB args":   {"deadbeef0000000000000002", "large"},
		"unknown class": {rubyJIDs["unknown class"], "Hostile::NoSuchJob"},
		"wrong types":   {rubyJIDs["wrong types"], "ArgumentError"},
		"other token":   {rubyJIDs["other token"], "queue isolation"},
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		missing := []string{}
		for name, w := range want {
			if _, ok := c.outcomeOf(w.needle); !ok {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hostile jobs in neither the dead nor the retry set: %v", missing)
		}
	}
	for name, w := range want {
		o, _ := c.outcomeOf(w.needle)
		if o.class == "" && o.message == "" {
			// A payload no job can be made of goes to the dead set as it
			// came, as Sidekiq does; the reason is in the worker's log.
			o.message = logLineWith(tw.log.String(), "bad payload: moved to the dead set", w.says)
		}
		t.Logf("%s: %s set, %s: %.200s", name, o.set, o.class, o.message)
		if o.message == "" {
			t.Errorf("%s: no error message", name)
		}
		if w.says != "" && !strings.Contains(o.class+" "+o.message, w.says) {
			t.Errorf("%s: error %s %q does not say %q", name, o.class, o.message, w.says)
		}
	}
	// The token worker is told to stop when its run ends, and exits 0; the
	// others live on.
	for name, p := range map[string]*proc{"token": tw, "report": c.procs["report"], "server": c.procs["server"]} {
		select {
		case <-p.done:
			if name != "token" || p.err != nil {
				t.Errorf("%s exited: %v\n%s", name, p.err, tail(p.log.String(), 2000))
			}
		default:
		}
	}
}

// runRubyPeer runs a chaos/testdata script with real Ruby Sidekiq and
// returns the JSON after its INTEROP_RESULT marker.
func runRubyPeer(t *testing.T, version, script string, env ...string) string {
	t.Helper()
	dir := e2etest.RubyDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2etest.SidekiqPeers(t), "ruby", version, script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("sidekiq-peers ruby %s %s: %v\n%s\n%s", version, script, err, out, stderr)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "INTEROP_RESULT "); ok {
			return rest
		}
	}
	t.Fatalf("%s printed no result line:\n%s", script, out)
	return ""
}

// logLineWith returns the first line of log holding both a and b.
func logLineWith(log, a, b string) string {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, a) && strings.Contains(line, b) {
			return line
		}
	}
	return ""
}
