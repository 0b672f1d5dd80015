package sidekiq

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

func job(jid, queue string) string {
	return `{"class":"X","args":[],"jid":"` + jid + `","queue":"` + queue + `"}`
}

// A queue whose name holds glob characters finds its own scheduled and
// retrying jobs (the ZSCAN pattern was unescaped: "q[1]" found none).
func TestPendingForQueueWithGlobCharacters(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	api := NewAPI(db.Pool, Dialect8)
	db.Do(t, "ZADD", "schedule", 1, job("s1", "q[1]"), 2, job("s2", "q1"))
	db.Do(t, "ZADD", "retry", 1, job("r1", "q[1]"), 2, job("r2", "q1"))
	p, err := api.PendingFor(context.Background(), "q[1]")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Pending{Scheduled: 1, Retries: 1}); p != want {
		t.Fatalf("pending = %+v, want %+v", p, want)
	}
	db.Do(t, "SADD", "queues", "q[1]", "q1")
	db.Do(t, "LPUSH", "queue:q[1]", job("e1", "q[1]"), job("e2", "q[1]"))
	n, err := api.PurgeQueue(context.Background(), "q[1]")
	if err != nil || n != 4 {
		t.Fatalf("purge = %d, %v; want 4", n, err)
	}
	for _, set := range []string{"schedule", "retry"} {
		if left, _ := redis.Strings(db.Do(t, "ZRANGE", set, 0, -1), nil); len(left) != 1 || !strings.Contains(left[0], `"q1"`) {
			t.Fatalf("%s holds %q, want q1's job only", set, left)
		}
	}
	if qs, _ := redis.Strings(db.Do(t, "SMEMBERS", "queues"), nil); !slices.Equal(qs, []string{"q1"}) {
		t.Fatalf("queues = %q", qs)
	}
}

// QueueWork and PendingFor walk the queue once and agree: every place a
// job of the queue can be, and nothing of other queues or from arguments
// that merely mention the queue.
func TestQueueWorkAndPendingForAgree(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	api := NewAPI(db.Pool, Dialect8)
	ctx := context.Background()
	db.Do(t, "SADD", "queues", "w", "other")
	db.Do(t, "LPUSH", "queue:w", job("e1", "w"), job("e2", "w"))
	db.Do(t, "LPUSH", "queue:other", job("o1", "other"))
	db.Do(t, "ZADD", "schedule", 1, job("s1", "w"), 2, `{"class":"X","args":[{"queue":"w"}],"jid":"s2","queue":"other"}`)
	db.Do(t, "ZADD", "retry", 1, job("r1", "w"))
	// A dead process's in-flight job and a live one's.
	db.Do(t, "SADD", "pallarel:inflight", "dead:1:aaaaaaaaaaaa|w", "live:2:bbbbbbbbbbbb|w")
	db.Do(t, "LPUSH", "pallarel:inflight|dead:1:aaaaaaaaaaaa|w", job("d1", "w"))
	db.Do(t, "LPUSH", "pallarel:inflight|live:2:bbbbbbbbbbbb|w", job("l1", "w"))
	db.Do(t, "SADD", "processes", "live:2:bbbbbbbbbbbb")
	db.Do(t, "HSET", "live:2:bbbbbbbbbbbb", "info", `{"queues":["w"],"identity":"live:2:bbbbbbbbbbbb"}`, "busy", 1, "quiet", "false")
	db.Do(t, "HSET", "live:2:bbbbbbbbbbbb:work", "tid1", `{"queue":"w","payload":"{}","run_at":1}`)

	w, err := api.QueueWork(ctx, "w")
	if err != nil {
		t.Fatal(err)
	}
	jids := func(raws [][]byte) []string {
		var out []string
		for _, r := range raws {
			j, _ := ParseJob(r)
			out = append(out, j.JID)
		}
		slices.Sort(out)
		return out
	}
	for _, c := range []struct {
		what string
		got  []string
		want []string
	}{
		{"enqueued", jids(w.Enqueued), []string{"e1", "e2"}},
		{"scheduled", jids(w.Scheduled), []string{"s1"}},
		{"retrying", jids(w.Retrying), []string{"r1"}},
		{"in flight", jids(w.InFlight), []string{"d1", "l1"}},
		{"consumers", w.Consumers, []string{"live:2:bbbbbbbbbbbb"}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if !w.Listed || w.OrphanedInFlight != 1 || w.Busy != 1 || !w.HasWork() {
		t.Errorf("listed %v, orphaned %d, busy %d, has work %v", w.Listed, w.OrphanedInFlight, w.Busy, w.HasWork())
	}
	p, err := api.PendingFor(ctx, "w")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Pending{Enqueued: 2, Scheduled: 1, Retries: 1, Running: 2}); p != want {
		t.Fatalf("pending = %+v, want %+v", p, want)
	}
	// Without in-flight lists, running jobs come from the work hashes.
	db.Do(t, "DEL", "pallarel:inflight|dead:1:aaaaaaaaaaaa|w", "pallarel:inflight|live:2:bbbbbbbbbbbb|w")
	if p, _ = api.PendingFor(ctx, "w"); p.Running != 1 {
		t.Fatalf("running from work hashes = %d, want 1", p.Running)
	}
}

// The Web UI's buttons move an entry in one step: of four clicks on the
// same entry, one wins and the others find it gone.
func TestSetButtonsMoveOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		set   SetName
		press func(*API, SetName, Entry) error
		check func(t *testing.T, db *redistest.DB)
	}{
		{"retry now", RetrySet, func(a *API, s SetName, e Entry) error { return a.RetryNow(ctx, s, e) },
			func(t *testing.T, db *redistest.DB) {
				raws, _ := redis.Strings(db.Do(t, "LRANGE", "queue:q", 0, -1), nil)
				if len(raws) != 1 || !strings.Contains(raws[0], `"retry_count":1`) || !strings.Contains(raws[0], "enqueued_at") {
					t.Fatalf("queue = %q, want the job once with retry_count lowered", raws)
				}
			}},
		{"requeue as", DeadSet, func(a *API, s SetName, e Entry) error {
			j := e.Job.Clone()
			j.Args = []json.RawMessage{json.RawMessage(`"inline"`)}
			return a.Requeue(ctx, s, e, j)
		}, func(t *testing.T, db *redistest.DB) {
			raws, _ := redis.Strings(db.Do(t, "LRANGE", "queue:q", 0, -1), nil)
			if len(raws) != 1 || !strings.Contains(raws[0], `"args":["inline"]`) {
				t.Fatalf("queue = %q, want the new job once", raws)
			}
			if ok, _ := redis.Bool(db.Do(t, "SISMEMBER", "queues", "q"), nil); !ok {
				t.Fatal("queue q not listed")
			}
		}},
		{"kill", ScheduledSet, func(a *API, s SetName, e Entry) error { return a.Kill(ctx, s, e) },
			func(t *testing.T, db *redistest.DB) {
				if n, _ := redis.Int(db.Do(t, "ZCARD", "dead"), nil); n != 1 {
					t.Fatalf("dead holds %d", n)
				}
			}},
		{"delete", DeadSet, func(a *API, s SetName, e Entry) error {
			ok, err := a.Delete(ctx, s, e)
			if err == nil && !ok {
				err = ErrNotFound
			}
			return err
		}, func(t *testing.T, db *redistest.DB) {}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			db := redistest.New(t)
			api := NewAPI(db.Pool, Dialect8)
			db.Do(t, "ZADD", string(c.set), "1700000000.5", `{"class":"X","args":[],"jid":"aaaaaaaaaaaaaaaaaaaaaaaa","queue":"q","retry_count":2}`)
			e, err := api.Find(ctx, c.set, 1700000000.5, "aaaaaaaaaaaaaaaaaaaaaaaa")
			if err != nil {
				t.Fatal(err)
			}
			var wins, gone atomic.Int32
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					switch err := c.press(api, c.set, e); {
					case err == nil:
						wins.Add(1)
					case errors.Is(err, ErrNotFound):
						gone.Add(1)
					default:
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if wins.Load() != 1 || gone.Load() != 3 {
				t.Fatalf("%d won, %d found it gone; want 1 and 3", wins.Load(), gone.Load())
			}
			if n, _ := redis.Int(db.Do(t, "ZCARD", string(c.set)), nil); n != 0 {
				t.Fatalf("%s still holds the entry", c.set)
			}
			c.check(t, db)
		})
	}
}

func TestStatsHistoryAndQueues(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	api := NewAPI(db.Pool, Dialect8)
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	api.now = func() time.Time { return now }
	ctx := context.Background()
	db.Do(t, "MSET", "stat:processed", 10, "stat:failed", 3, "stat:processed:2026-11-30", 4, "stat:failed:2026-11-29", 1)
	db.Do(t, "SADD", "queues", "default", "b")
	db.Do(t, "LPUSH", "queue:default", `{"class":"X","args":[],"jid":"a","queue":"default","enqueued_at":`+
		string(Dialect8.Timestamp(now.Add(-30*time.Second)))+`}`)
	db.Do(t, "ZADD", "dead", 1, "x")
	s, err := api.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Processed != 10 || s.Failed != 3 || s.Dead != 1 || s.Enqueued != 1 || s.DefaultLatency != 30 {
		t.Fatalf("stats %+v", s)
	}
	h, err := api.History(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []DayStat{{"2026-11-30", 4, 0}, {"2026-11-29", 0, 1}}; !slices.Equal(h, want) {
		t.Fatalf("history %v, want %v", h, want)
	}
	qs, _ := api.Queues(ctx)
	if len(qs) != 2 || qs[0].Name != "b" || qs[1].Name != "default" || qs[1].Size != 1 {
		t.Fatalf("queues %+v", qs)
	}
}

// PurgeQueueKeepingForeign empties the queue and its retries like
// PurgeQueue, and the jobs foreign names go to the dead set with the
// reason, a retry's error kept ahead of it; garbage goes as it came.
func TestPurgeQueueKeepingForeign(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	api := NewAPI(db.Pool, Dialect8)
	ctx := context.Background()
	retrying := `{"class":"Foreign","args":[],"jid":"r1","queue":"t","error_class":"NameError","error_message":"uninitialized constant Foreign"}`
	db.Do(t, "ZADD", "retry", 1, retrying, 2, job("own-r", "t"))
	db.Do(t, "LPUSH", "queue:t", job("own-q", "t"), "not json", `{"class":"Foreign","args":[],"jid":"q1","queue":"t"}`)
	purged, killed, err := api.PurgeQueueKeepingForeign(ctx, "t", 100, func(e Entry) string {
		if e.Job == nil {
			return "garbage"
		}
		if e.Job.Class == "Foreign" {
			return "not ours"
		}
		return ""
	})
	if err != nil || purged != 5 || killed != 3 {
		t.Fatalf("purged %d, killed %d, %v; want 5, 3", purged, killed, err)
	}
	if n, _ := redis.Int(db.Do(t, "LLEN", "queue:t"), nil); n != 0 {
		t.Fatalf("queue holds %d jobs", n)
	}
	if n, _ := redis.Int(db.Do(t, "ZCARD", "retry"), nil); n != 0 {
		t.Fatalf("retry holds %d jobs", n)
	}
	dead, _ := redis.Strings(db.Do(t, "ZRANGE", "dead", 0, -1), nil)
	all := strings.Join(dead, "\n")
	for _, want := range []string{"not json", `"error_message":"uninitialized constant Foreign (not ours)"`, `"jid":"q1"`, `"error_class":"Pallarel::LeftoverJob"`} {
		if !strings.Contains(all, want) {
			t.Errorf("dead set lacks %s: %v", want, dead)
		}
	}
	if strings.Contains(all, "own-") {
		t.Errorf("the queue's own jobs went to the dead set: %v", dead)
	}
}
