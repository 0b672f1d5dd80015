package interop

import (
	"encoding/json"
	"fmt"
	"html"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq"
)

type webPage struct {
	Status   int    `json:"status"`
	Body     string `json:"body"`
	Location string `json:"location"`
}

type webPost struct {
	Status   int    `json:"status"`
	Location string `json:"location"`
}

// TestRubyWebUIOnGoData drives the real 6.4.1, 7.3.2 and 8.0.6 Sidekiq::Web (Rack,
// no server) over a running Go server and its retry, dead and scheduled
// entries: every page renders with the Go data (the TV17 guards: detail
// pages of Go-written retries, a re-failed retry, a panic backtrace, a dead
// job and a bad payload in the morgue, TV10), and the buttons work: retry
// now on a retry and on a dead entry, delete, kill, then Quiet and Stop of
// the Go process.
//
// The Go server runs in the dialect of each Ruby version (Dialect6 for
// 6.4.1, whose Busy page lists jobs only from <identity>:workers; Dialect7
// for 7.3.2, both reading timestamps as float seconds; Dialect8 for 8.0.6).
func TestRubyWebUIOnGoData(t *testing.T) {
	for _, tc := range []struct {
		version string
		dialect sidekiq.Dialect
	}{{"6", sidekiq.Dialect6}, {"7", sidekiq.Dialect7}, {"8", sidekiq.Dialect8}} {
		t.Run("sidekiq"+tc.version, func(t *testing.T) {
			t.Parallel()
			f := newGoFixture(t, tc.dialect, 3)
			env := []string{"REDIS_URL=" + f.db.URL(), "IDENTITY=" + f.srv.Identity()}

			// A second failure path: a job that already failed twice
			// fails again in Go (retried_at, retry_count 3).
			again := mustJob(t, "Interop::FailJob", workQueue, 9)
			_ = again.SetField("retry_count", 2)
			_ = again.SetField("retry_queue", parkedQueue)
			_ = again.SetField("backtrace", true)
			again.SetTime("failed_at", time.Now().Add(-time.Hour), tc.dialect)
			againJID := mustPush(t, f.srv.Client(), again)
			waitFor(t, 20*time.Second, "the re-failed job in the retry set", func() bool {
				return redisInt(t, f.db, "ZCARD", "retry") == len(f.failJIDs)+2 &&
					redisInt(t, f.db, "GET", "stat:processed") == f.processed+1
			})

			var pages struct {
				Pages     map[string]webPage `json:"pages"`
				RetryKeys []string           `json:"retry_keys"`
				DeadKeys  []string           `json:"dead_keys"`
				Forbidden int                `json:"forbidden"`
			}
			rubyResult(t, tc.version, "testdata/web.rb", &pages, append(env, "MODE=pages")...)
			if len(pages.RetryKeys) != len(f.failJIDs)+2 || len(pages.DeadKeys) != 1 {
				t.Fatalf("ruby found retry keys %v dead keys %v", pages.RetryKeys, pages.DeadKeys)
			}
			t.Logf("Sidekiq %s Web: %d pages fetched", tc.version, len(pages.Pages))
			for path, p := range pages.Pages {
				if p.Status != 200 {
					t.Errorf("GET %s: %d (location %q)\n%s", path, p.Status, p.Location, truncate(p.Body, 2000))
				}
			}
			host, _ := os.Hostname()
			want := map[string][]string{
				"/busy":            {fmt.Sprintf("%s:%d", host, os.Getpid()), f.srv.Identity(), f.blockJID, "Interop::BlockJob"},
				"/queues":          {"waiting", "waiting8"},
				"/queues/waiting":  {f.waitJID, "Interop::OkJob"},
				"/queues/waiting8": {f.wait8JID},
				"/retries":         append([]string{f.panicJID, againJID, "Interop::FailJob"}, f.failJIDs...),
				"/scheduled":       {f.schedJID},
				"/morgue":          {f.deadJID, "Interop::DeadJob", f.badJSON},
			}
			for _, k := range pages.RetryKeys {
				want["/retries/"+k] = []string{k[strings.LastIndexByte(k, '-')+1:]}
			}
			if tc.version != "6" {
				// The Metrics tab reads the execution metrics Go writes.
				want["/metrics"] = []string{"Interop::FailJob"}
			}
			if tc.version == "8" {
				// 8.0.6 prints a process's version only when it differs
				// from its own: a Go process must not show one.
				if strings.Contains(pages.Pages["/busy"].Body, "Version: ") {
					t.Errorf("/busy flags the Go process's version as a mismatch")
				}
				// The job's Metrics page charts the h|<Class> histograms.
				body := html.UnescapeString(pages.Pages["/metrics/Interop::OkJob"].Body)
				m := regexp.MustCompile(`"series":\[([0-9,]*)\]`).FindStringSubmatch(body)
				runs := 0
				if m != nil {
					for _, n := range strings.Split(m[1], ",") {
						k, _ := strconv.Atoi(n)
						runs += k
					}
				}
				if runs < 2 {
					t.Errorf("/metrics/Interop::OkJob charts %d runs (series %v), want the 2 Go ran\n%s", runs, m, truncate(body[max(0, strings.Index(body, "<section")):], 800))
				}
			}
			for _, k := range pages.DeadKeys {
				want["/morgue/"+k] = []string{f.deadJID, "dead from go"}
			}
			for path, needles := range want {
				p, ok := pages.Pages[path]
				if !ok {
					t.Errorf("page %s was not fetched", path)
					continue
				}
				body := html.UnescapeString(p.Body)
				for _, n := range needles {
					if !strings.Contains(body, n) {
						t.Errorf("GET %s does not show %q", path, n)
					}
				}
			}
			// Detail pages show the Go error and its backtrace.
			for path, p := range pages.Pages {
				if !strings.HasPrefix(path, "/retries/") {
					continue
				}
				body := html.UnescapeString(p.Body)
				switch {
				case strings.HasSuffix(path, f.panicJID):
					if !strings.Contains(body, "go panic for the backtrace") || !strings.Contains(body, "fixture_test.go:") {
						t.Errorf("GET %s lacks the panic and its Go stack", path)
					}
				case strings.HasSuffix(path, againJID):
					if !strings.Contains(body, "boom from go 9") {
						t.Errorf("GET %s lacks the error of the re-failed job", path)
					}
				default:
					jid := path[strings.LastIndexByte(path, '-')+1:]
					i := indexOf(f.failJIDs, jid)
					msg := fmt.Sprintf("boom from go %d", i)
					// The error, and the backtrace from the handler's line.
					if i < 0 || !strings.Contains(body, msg) || !strings.Contains(body, "fixture_test.go:") {
						t.Errorf("GET %s lacks %q or its backtrace", path, msg)
					}
				}
			}
			var stats struct {
				Sidekiq struct {
					Processed, Failed, Busy, Processes, Retries, Dead, Scheduled, Enqueued int
				} `json:"sidekiq"`
			}
			if err := json.Unmarshal([]byte(pages.Pages["/stats"].Body), &stats); err != nil {
				t.Fatalf("/stats: %v\n%s", err, pages.Pages["/stats"].Body)
			}
			s := stats.Sidekiq
			if s.Processed != f.processed+1 || s.Failed != f.failed+1 || s.Busy != 1 || s.Processes != 1 ||
				s.Retries != len(f.failJIDs)+2 || s.Dead != 2 || s.Scheduled != 1 || s.Enqueued != 2 {
				t.Errorf("/stats %+v; want processed %d failed %d busy 1 processes 1 retries %d dead 2 scheduled 1 enqueued 2",
					s, f.processed+1, f.failed+1, len(f.failJIDs)+2)
			}
			if pages.Forbidden != 403 {
				t.Errorf("POST without authenticity_token: %d, want 403", pages.Forbidden)
			}

			// The buttons.
			var acts map[string]webPost
			rubyResult(t, tc.version, "testdata/web.rb", &acts, append(env, "MODE=actions",
				"RETRY_JID="+f.failJIDs[0], "DELETE_JID="+f.failJIDs[1], "KILL_JID="+f.failJIDs[2], "DEAD_JID="+f.deadJID)...)
			t.Logf("Sidekiq %s Web buttons: %+v", tc.version, acts)
			for name, p := range acts {
				if p.Status != 302 {
					t.Errorf("POST %s: %d, want 302", name, p.Status)
				}
			}
			parked := queueJobs(t, f, parkedQueue)
			for _, jid := range []string{f.failJIDs[0], f.deadJID} {
				j, ok := parked[jid]
				if !ok {
					t.Errorf("retry now: %s is not back in queue %s (has %v)", jid, parkedQueue, keys(parked))
					continue
				}
				var count int
				if _, err := j.Field("retry_count", &count); err != nil || count != -1 {
					t.Errorf("retry now: %s retry_count %d, want 0-1 = -1 as Sidekiq's retry does", jid, count)
				}
				if at, ok := j.Time("enqueued_at"); !ok || time.Since(at) > time.Minute || time.Since(at) < -time.Minute {
					t.Errorf("retry now: %s enqueued_at %s (raw %s)", jid, at, j.Fields["enqueued_at"])
				}
			}
			api := sidekiq.NewAPI(f.db.Pool, tc.dialect)
			retries := setJIDs(t, api, sidekiq.RetrySet)
			dead := setJIDs(t, api, sidekiq.DeadSet)
			for _, jid := range f.failJIDs {
				if retries[jid] {
					t.Errorf("%s still in the retry set after its button", jid)
				}
			}
			if !retries[f.panicJID] || !retries[againJID] || len(retries) != 2 {
				t.Errorf("retry set after the buttons: %v, want only %s and %s", retries, f.panicJID, againJID)
			}
			if !dead[f.failJIDs[2]] || dead[f.deadJID] || dead[f.failJIDs[1]] {
				t.Errorf("dead set after kill and retry now: %v; want %s in, %s and %s out", dead, f.failJIDs[2], f.deadJID, f.failJIDs[1])
			}
			waitFor(t, 10*time.Second, "Quiet from the Busy page reaches the Go heartbeat", func() bool {
				return redisString(t, f.db, "HGET", f.srv.Identity(), "quiet") == "true"
			})

			// Stop: let the running job finish, press Stop, and the Go
			// server shuts down and leaves the process set.
			f.release()
			var stop map[string]webPost
			rubyResult(t, tc.version, "testdata/web.rb", &stop, append(env, "MODE=stop")...)
			if stop["stop"].Status != 302 {
				t.Errorf("POST stop: %d, want 302", stop["stop"].Status)
			}
			select {
			case err := <-f.done:
				if err != nil {
					t.Errorf("go server after Stop: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Stop from the Busy page did not stop the Go server")
			}
			if redisInt(t, f.db, "SISMEMBER", "processes", f.srv.Identity()) != 0 ||
				redisInt(t, f.db, "EXISTS", f.srv.Identity()+":work") != 0 {
				t.Errorf("stopped Go server still in processes or has a work hash")
			}
		})
	}
}

func queueJobs(t *testing.T, f *goFixture, queue string) map[string]*sidekiq.Job {
	t.Helper()
	raws, err := redis.ByteSlices(f.db.Do(t, "LRANGE", "queue:"+queue, 0, -1), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*sidekiq.Job{}
	for _, r := range raws {
		j, err := sidekiq.ParseJob(r)
		if err != nil {
			t.Fatalf("queue %s entry %s: %v", queue, r, err)
		}
		out[j.JID] = j
	}
	return out
}

func setJIDs(t *testing.T, api *sidekiq.API, set sidekiq.SetName) map[string]bool {
	t.Helper()
	es, err := api.SetEntries(t.Context(), set, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range es {
		if e.Job != nil {
			out[e.Job.JID] = true
		}
	}
	return out
}

func keys(m map[string]*sidekiq.Job) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
