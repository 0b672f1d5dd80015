package interop

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/sidekiq"
)

// TestRubyClientToGoServer: jobs pushed by Ruby's Sidekiq::Client,
// perform_async, perform_in, push_bulk and (7.3.2) ActiveJob perform_later
// run in the Go server with exactly the arguments Ruby gave.
func TestRubyClientToGoServer(t *testing.T) {
	for _, v := range versions {
		t.Run("sidekiq"+v, func(t *testing.T) {
			t.Parallel()
			db := redistest.New(t)
			rec := newRecorder()
			reg := sidekiq.NewRegistry()
			mustRegister(t, reg, rec.handle, "Interop::PushJob", "InteropRubyJob", "Interop::BulkJob", "InteropAjJob")
			// A small poll average so that perform_in(1) and set(wait: 1)
			// are moved from the schedule set within seconds.
			startServer(t, db, reg, sidekiq.Options{
				Queues: []sidekiq.QueueWeight{{Name: "interop"}}, Concurrency: 3, PollAverage: 200 * time.Millisecond,
			})

			var res struct {
				Push, Async, In string
				Bulk            []string
				AJNow           string   `json:"aj_now"`
				AJLater         string   `json:"aj_later"`
				AJJobIDs        []string `json:"aj_job_ids"`
			}
			rubyResult(t, v, "testdata/push.rb", &res, "REDIS_URL="+db.URL())
			jids := append([]string{res.Push, res.Async, res.In}, res.Bulk...)
			if v != "6" {
				jids = append(jids, res.AJNow, res.AJLater)
			}
			for _, j := range jids {
				if len(j) != 24 {
					t.Fatalf("ruby returned jid %q; result %+v", j, res)
				}
			}
			// The scheduled ones wait for the poller's first run (up to 5 s
			// after start) plus their 1 s.
			runs := rec.wait(t, 30*time.Second, jids...)
			now := time.Now()

			push := runs[res.Push]
			wantRaw := `[{"名前":"太郎","数":1,"nested":{"ok":true}},42,3.25,null,true,false,"文字列"]`
			if got := joinArgs(push.Args); got != wantRaw {
				t.Errorf("Client.push args\n got %s\nwant %s", got, wantRaw)
			}
			var (
				hash   map[string]any
				n      int
				f      float64
				null   any = "not nil"
				yes    bool
				no     = true
				str    string
				pushed = push.Job
			)
			if err := pushed.ScanArgs(&hash, &n, &f, &null, &yes, &no, &str); err != nil {
				t.Fatalf("scan Client.push args: %v", err)
			}
			wantHash := map[string]any{"名前": "太郎", "数": float64(1), "nested": map[string]any{"ok": true}}
			if !reflect.DeepEqual(hash, wantHash) || n != 42 || f != 3.25 || null != nil || !yes || no || str != "文字列" {
				t.Errorf("decoded Client.push args: %v %d %v %v %v %v %q", hash, n, f, null, yes, no, str)
			}
			if push.Queue != "interop" || push.Class != "Interop::PushJob" {
				t.Errorf("push: queue %q class %q", push.Queue, push.Class)
			}
			for _, field := range []string{"created_at", "enqueued_at"} {
				ts, ok := pushed.Time(field)
				if !ok || now.Sub(ts) > time.Minute || now.Sub(ts) < -time.Minute {
					t.Errorf("push %s = %s (raw %s): want within a minute of now", field, ts, pushed.Fields[field])
				}
			}

			if got := joinArgs(runs[res.Async].Args); got != `["async",1]` || runs[res.Async].Class != "InteropRubyJob" {
				t.Errorf("perform_async: class %q args %s", runs[res.Async].Class, got)
			}
			if got := joinArgs(runs[res.In].Args); got != `["later",2]` {
				t.Errorf("perform_in: args %s", got)
			}
			if at, ok := runs[res.In].Job.Time("enqueued_at"); !ok {
				t.Errorf("perform_in job moved without enqueued_at")
			} else if created, _ := runs[res.In].Job.Time("created_at"); at.Sub(created) < 900*time.Millisecond {
				t.Errorf("perform_in(1) enqueued %s after creation: want about 1s or more", at.Sub(created))
			}
			wantBulk := []string{`[1]`, `[2,"two"]`, `[{"k":"v"}]`}
			for i, jid := range res.Bulk {
				if got := joinArgs(runs[jid].Args); got != wantBulk[i] || runs[jid].Class != "Interop::BulkJob" {
					t.Errorf("push_bulk %d: class %q args %s, want %s", i, runs[jid].Class, got, wantBulk[i])
				}
			}

			if v == "6" {
				// ActiveJob (Rails) is installed only in the chroot of
				// 7.3.2 and 8.0.6; the host's 6.4.1 has no Rails.
				return
			}
			// Rails 7.2's adapter on 7.3.2 writes the legacy wrapper;
			// Sidekiq 8's own adapter writes Sidekiq::ActiveJob::Wrapper.
			wrapper := sidekiq.ActiveJobLegacyWrapper
			if v == "8" {
				wrapper = sidekiq.ActiveJobWrapper
			}
			for i, tc := range []struct {
				jid   string
				count int
				flag  bool
			}{{res.AJNow, 3, true}, {res.AJLater, 4, false}} {
				r := runs[tc.jid]
				if r.Class != wrapper || r.HandlerClass != "InteropAjJob" ||
					r.Job.StringField("wrapped") != "InteropAjJob" {
					t.Errorf("perform_later %d: class %q wrapped %q handler %q", i, r.Class, r.Job.StringField("wrapped"), r.HandlerClass)
				}
				env, err := r.Job.Envelope()
				if err != nil {
					t.Fatalf("envelope: %v", err)
				}
				if env.JobID != res.AJJobIDs[i] || env.QueueName != "interop" {
					t.Errorf("envelope job_id %q queue %q, want %q interop", env.JobID, env.QueueName, res.AJJobIDs[i])
				}
				if i == 1 && (env.ScheduledAt == nil || *env.ScheduledAt == "") {
					t.Errorf("set(wait: 1) envelope has no scheduled_at")
				}
				want := []string{`"名前"`, `{"a":1,"b":[1,2]}`, `"2024-01-02T03:04:05.123456Z"`, `"sym"`,
					mustJSON(t, map[string]any{"count": tc.count, "flag": tc.flag})}
				if len(r.Arguments) != len(want) {
					t.Fatalf("perform_later %d: %d arguments %s, want %d", i, len(r.Arguments), joinArgs(r.Arguments), len(want))
				}
				for k := range want {
					if got := canonical(t, r.Arguments[k]); got != canonical(t, []byte(want[k])) {
						t.Errorf("perform_later %d argument %d = %s, want %s (raw %s)", i, k, got, want[k], r.Job.Args[0])
					}
				}
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
