package interop

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/sidekiq"
)

// echoed is what testdata/jobs.rb writes for each job it ran.
type echoed struct {
	JID        string            `json:"jid"`
	JobID      string            `json:"job_id"`
	Class      string            `json:"class"`
	Args       []json.RawMessage `json:"args"`
	Kwargs     map[string]any    `json:"kwargs"`
	Queue      string            `json:"queue"`
	ArgClasses []string          `json:"arg_classes"`
}

// TestGoClientToRubyServer: jobs pushed by the Go client in every dialect
// run in a real Ruby `sidekiq` process with the arguments Go gave, and a Go
// ActiveJob runs in Rails 7.2's ActiveJob on Sidekiq 7.3.2 (Dialect7, the
// legacy wrapper) and 8.0.6 (Dialect8, Sidekiq::ActiveJob::Wrapper).
func TestGoClientToRubyServer(t *testing.T) {
	for _, v := range versions {
		t.Run("sidekiq"+v, func(t *testing.T) {
			t.Parallel()
			db := redistest.New(t)
			args := []any{map[string]any{"名前": "太郎", "数": 1, "list": []any{1, "a", nil}}, 42, 3.25, nil, true, false, "文字列"}
			wantArgs := `[{"list":[1,"a",null],"名前":"太郎","数":1},42,3.25,null,true,false,"文字列"]`
			want := map[string]sidekiq.Dialect{}
			for _, d := range []sidekiq.Dialect{sidekiq.Dialect8, sidekiq.Dialect7, sidekiq.Dialect6} {
				c := sidekiq.NewClient(db.Pool, sidekiq.ClientOptions{Dialect: d})
				want[mustPush(t, c, mustJob(t, "InteropEchoJob", "q", args...))] = d
			}
			var ajJID, ajID, newWrapperJID string
			ajDialect := sidekiq.Dialect7
			if v == "8" {
				ajDialect = sidekiq.Dialect8
			}
			if v != "6" {
				aj, err := sidekiq.NewActiveJob(ajDialect, "InteropAjEchoJob", "q", "名前", map[string]any{"k": "v", "n": 2}, 7, []any{1.5, "x"})
				if err != nil {
					t.Fatal(err)
				}
				env, _ := aj.Envelope()
				ajID = env.JobID
				ajJID = mustPush(t, sidekiq.NewClient(db.Pool, sidekiq.ClientOptions{Dialect: ajDialect}), aj)
			}
			if v == "7" {
				// TV16: Sidekiq 8's wrapper name (Dialect8) does not exist
				// in 7.3.2, so a 7.3.2 consumer fails it with NameError and
				// it lands in the retry set. That is why Go writes the
				// legacy name for Dialect7/6.
				aj8, err := sidekiq.NewActiveJob(sidekiq.Dialect8, "InteropAjEchoJob", "q", "x")
				if err != nil {
					t.Fatal(err)
				}
				newWrapperJID = mustPush(t, sidekiq.NewClient(db.Pool, sidekiq.ClientOptions{}), aj8)
			}

			rs := startRubySidekiq(t, v, db, "q")
			n := len(want)
			if ajJID != "" {
				n++
			}
			got := map[string]echoed{}
			deadline := time.Now().Add(60 * time.Second)
			for len(got) < n {
				c := db.Pool.Get()
				vals, err := redis.ByteSlices(c.Do("BLPOP", "interop:results", 1))
				c.Close()
				if err != nil && err != redis.ErrNil {
					t.Fatal(err)
				}
				if vals == nil {
					select {
					case err := <-rs.done:
						t.Fatalf("ruby sidekiq exited: %v\n%s", err, rs.output)
					default:
					}
					if time.Now().After(deadline) {
						t.Fatalf("ruby ran %d of %d jobs; output:\n%s", len(got), n, rs.output)
					}
					continue
				}
				var e echoed
				if err := json.Unmarshal(vals[1], &e); err != nil {
					t.Fatalf("result %s: %v", vals[1], err)
				}
				got[e.JID] = e
			}
			for jid, d := range want {
				e, ok := got[jid]
				if !ok {
					t.Errorf("%s job %s did not run in ruby; got %v", dialectName(d), jid, got)
					continue
				}
				if e.Class != "InteropEchoJob" || joinArgs(e.Args) != wantArgs {
					t.Errorf("%s job ran in ruby as %s%s, want InteropEchoJob%s", dialectName(d), e.Class, joinArgs(e.Args), wantArgs)
				}
			}
			if v == "6" {
				return
			}
			e := got[ajJID]
			if e.Class != "InteropAjEchoJob" || e.JobID != ajID || e.Queue != "q" {
				t.Errorf("activejob ran as %+v, want class InteropAjEchoJob job_id %s queue q", e, ajID)
			}
			wantAJ := `["名前",{"k":"v","n":2},7,[1.5,"x"]]`
			if canonical(t, []byte(joinArgs(e.Args))) != canonical(t, []byte(wantAJ)) || len(e.Kwargs) != 0 {
				t.Errorf("activejob args %s kwargs %v, want %s and no kwargs", joinArgs(e.Args), e.Kwargs, wantAJ)
			}
			// A plain Go map becomes a plain Ruby Hash (string keys), not
			// keywords and not a HashWithIndifferentAccess.
			if !reflect.DeepEqual(e.ArgClasses, []string{"String", "Hash", "Integer", "Array"}) {
				t.Errorf("activejob Ruby argument classes %v", e.ArgClasses)
			}
			if v != "7" {
				return
			}
			api := sidekiq.NewAPI(db.Pool, sidekiq.Dialect7)
			waitFor(t, 30*time.Second, "the Sidekiq 8 wrapper job in the retry set", func() bool {
				n, err := api.SetSize(context.Background(), sidekiq.RetrySet)
				return err == nil && n == 1
			})
			entries, err := api.SetEntries(context.Background(), sidekiq.RetrySet, 0, 1)
			if err != nil || len(entries) != 1 || entries[0].Job == nil {
				t.Fatalf("retry entries %v: %v", entries, err)
			}
			j := entries[0].Job
			if j.JID != newWrapperJID || j.StringField("error_class") != "NameError" {
				t.Errorf("retry entry jid %s error_class %q (%s), want %s NameError",
					j.JID, j.StringField("error_class"), j.StringField("error_message"), newWrapperJID)
			}
		})
	}
}
