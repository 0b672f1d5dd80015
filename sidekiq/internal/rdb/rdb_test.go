package rdb

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

// setup gives the test its own database and a connection on it.
func setup(tb testing.TB) (*redistest.DB, redis.Conn) {
	tb.Helper()
	db := redistest.New(tb)
	c := db.Pool.Get()
	tb.Cleanup(func() { c.Close() })
	return db, c
}

func strs(tb testing.TB, v any) []string {
	tb.Helper()
	s, err := redis.Strings(v, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func asStrings(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out
}

// A queue name with glob characters matches itself only: before escaping,
// "q[1]" matched "q1" and not itself, and "a*" matched every queue starting
// with "a".
func TestSetCandidatesForQueueEscapesGlob(t *testing.T) {
	t.Parallel()
	db, c := setup(t)
	names := []string{"q[1]", "q1", "a*", "ab", "x?", "xy", `b\s`, "bs", "c]", "c-d"}
	for i, q := range names {
		db.Do(t, "ZADD", "schedule", i, `{"class":"X","args":[],"queue":"`+strings.ReplaceAll(q, `\`, `\\`)+`","jid":"j`+q+`"}`)
	}
	for _, q := range names {
		got, err := SetCandidatesForQueue(c, "schedule", q)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !strings.Contains(string(got[0]), `"jid":"j`+q+`"`) {
			t.Errorf("queue %q: candidates %q, want its one job", q, asStrings(got))
		}
	}
}

func TestSetCandidatesForQueueScansPastOneBatch(t *testing.T) {
	t.Parallel()
	db, c := setup(t)
	args := []any{"retry"}
	for i := range 2500 {
		q := "other"
		if i%2 == 0 {
			q = "mine"
		}
		args = append(args, i, `{"queue":"`+q+`","k":`+strconv.Itoa(i)+`}`)
	}
	db.Do(t, "ZADD", args...)
	got, err := SetCandidatesForQueue(c, "retry", "mine")
	if err != nil || len(got) != 1250 {
		t.Fatalf("got %d candidates, %v; want 1250", len(got), err)
	}
}

func TestReadTotalsAndDays(t *testing.T) {
	t.Parallel()
	db, c := setup(t)
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	if err := FlushStats(c, now, 7, 2); err != nil {
		t.Fatal(err)
	}
	if err := FlushStats(c, now.AddDate(0, 0, -1), 1, 0); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := redis.Int(db.Do(t, "TTL", "stat:processed:2026-11-30"), nil); ttl <= StatsTTL-5 {
		t.Fatalf("daily TTL %d, want about %d", ttl, StatsTTL)
	}
	db.Do(t, "ZADD", "schedule", 1, "a", 2, "b")
	db.Do(t, "ZADD", "retry", 1, "c")
	db.Do(t, "SADD", "processes", "p1", "p2", "p3")
	tot, err := ReadTotals(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Totals{Processed: 8, Failed: 2, Scheduled: 2, Retries: 1, Dead: 0, Processes: 3}); tot != want {
		t.Fatalf("totals %+v, want %+v", tot, want)
	}
	days, err := ReadDays(c, []time.Time{now, now.AddDate(0, 0, -1), now.AddDate(0, 0, -2)})
	if err != nil {
		t.Fatal(err)
	}
	if want := []DayCounts{{7, 2}, {1, 0}, {0, 0}}; !slices.Equal(days, want) {
		t.Fatalf("days %v, want %v", days, want)
	}
}

func TestQueueReadsAndDeletes(t *testing.T) {
	t.Parallel()
	db, c := setup(t)
	if err := Push(c, []QueuedJob{{"b", []byte("b1")}, {"b", []byte("b2")}, {"a", []byte("a1")}, {"b", []byte("b3")}}); err != nil {
		t.Fatal(err)
	}
	db.Do(t, "SADD", "queues", "empty")
	heads, err := ReadQueueHeads(c)
	if err != nil {
		t.Fatal(err)
	}
	want := []QueueHead{{"a", 1, []byte("a1")}, {"b", 3, []byte("b1")}, {"empty", 0, nil}}
	if !slices.EqualFunc(heads, want, func(x, y QueueHead) bool {
		return x.Name == y.Name && x.Size == y.Size && string(x.Oldest) == string(y.Oldest)
	}) {
		t.Fatalf("heads %+v, want %+v", heads, want)
	}
	// Next to run first.
	got, err := QueueRange(c, "b", 1, 5)
	if err != nil || !slices.Equal(asStrings(got), []string{"b2", "b3"}) {
		t.Fatalf("range = %q, %v", asStrings(got), err)
	}
	if ok, err := Listed(c, "b"); !ok || err != nil {
		t.Fatalf("listed = %v, %v", ok, err)
	}
	if ok, _ := RemoveFromQueue(c, "b", []byte("b2")); !ok {
		t.Fatal("b2 not removed")
	}
	if ok, _ := RemoveFromQueue(c, "b", []byte("b2")); ok {
		t.Fatal("b2 removed twice")
	}
	n, err := DeleteQueue(c, "b")
	if err != nil || n != 2 {
		t.Fatalf("delete = %d, %v; want 2", n, err)
	}
	if ok, _ := Listed(c, "b"); ok {
		t.Fatal("deleted queue still listed")
	}
	if l, _ := QueueLen(c, "b"); l != 0 {
		t.Fatalf("deleted queue holds %d", l)
	}
}

func TestRemoveMembersAndUnlink(t *testing.T) {
	t.Parallel()
	db, c := setup(t)
	db.Do(t, "ZADD", "retry", 1, "a", 2, "b", 3, "c")
	if n, err := RemoveMembers(c, "retry", []byte("a"), []byte("c"), []byte("zz")); n != 2 || err != nil {
		t.Fatalf("removed %d, %v", n, err)
	}
	if n, err := RemoveMembers(c, "retry"); n != 0 || err != nil {
		t.Fatalf("no members: %d, %v", n, err)
	}
	if n, _ := SetSize(c, "retry"); n != 1 {
		t.Fatalf("size %d", n)
	}
	if err := Unlink(c, "retry"); err != nil {
		t.Fatal(err)
	}
	if n, _ := SetSize(c, "retry"); n != 0 {
		t.Fatalf("size after unlink %d", n)
	}
}

// MoveToDead is one step: the member leaves its set and enters the dead
// set together, once, and the dead set is trimmed by age and size.
func TestMoveToDeadOnceWithTrim(t *testing.T) {
	t.Parallel()
	db, c := setup(t)
	now := time.Unix(1_800_000_000, 0)
	lim := DeadLimits{MaxJobs: 3, Timeout: time.Hour}
	db.Do(t, "ZADD", "dead", Score(now.Add(-2*time.Hour)), "too-old", Score(now.Add(-3*time.Minute)), "d1",
		Score(now.Add(-2*time.Minute)), "d2", Score(now.Add(-time.Minute)), "d3")
	db.Do(t, "ZADD", "schedule", 5, "bad")
	ok, err := MoveToDead(c, "schedule", []byte("bad"), now, lim)
	if err != nil || !ok {
		t.Fatalf("move = %v, %v", ok, err)
	}
	if ok, _ := MoveToDead(c, "schedule", []byte("bad"), now, lim); ok {
		t.Fatal("moved twice")
	}
	dead := strs(t, db.Do(t, "ZRANGE", "dead", 0, -1))
	// ZREMRANGEBYRANK 0 -max_jobs keeps max_jobs-1 entries, as Sidekiq's
	// DeadSet#kill does.
	if !slices.Equal(dead, []string{"d3", "bad"}) {
		t.Fatalf("dead = %q, want the newest 2 without the expired one", dead)
	}
	if n, _ := SetSize(c, "schedule"); n != 0 {
		t.Fatal("member left in its set")
	}
}

func TestPromoteOnce(t *testing.T) {
	t.Parallel()
	db, c := setup(t)
	db.Do(t, "ZADD", "retry", 1, "old")
	due, err := Due(c, "retry", time.Unix(2, 0), 10)
	if err != nil || len(due) != 1 {
		t.Fatalf("due = %q, %v", asStrings(due), err)
	}
	if ok, err := Promote(c, "retry", "q", []byte("old"), []byte("new")); !ok || err != nil {
		t.Fatalf("promote = %v, %v", ok, err)
	}
	if ok, _ := Promote(c, "retry", "q", []byte("old"), []byte("new")); ok {
		t.Fatal("promoted twice")
	}
	if got := strs(t, db.Do(t, "LRANGE", "queue:q", 0, -1)); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("queue = %q", got)
	}
	if ok, _ := Listed(c, "q"); !ok {
		t.Fatal("queue not listed")
	}
}

func TestProcessesWorkAndSignals(t *testing.T) {
	t.Parallel()
	db, c := setup(t)
	sig, existed, err := Beat(c, "h:1:a", []any{"info", `{"x":1}`, "busy", 2, "beat", "1.5", "quiet", "false", "rss", 10}, 60)
	if err != nil || sig != "" || existed {
		t.Fatalf("first beat = %q, %v, %v", sig, existed, err)
	}
	if err := Signal(c, "h:1:a", "TSTP"); err != nil {
		t.Fatal(err)
	}
	sig, existed, err = Beat(c, "h:1:a", []any{"busy", 1}, 60)
	if err != nil || sig != "TSTP" || !existed {
		t.Fatalf("second beat = %q, %v, %v", sig, existed, err)
	}
	db.Do(t, "SADD", "processes", "gone:2:b")
	if err := WriteWork(c, "h:1:a", map[string][]byte{"t1": []byte(`{"queue":"q"}`)}, true, 60); err != nil {
		t.Fatal(err)
	}
	ps, err := ReadProcesses(c)
	if err != nil {
		t.Fatal(err)
	}
	want := []ProcessHash{{Identity: "gone:2:b"}, {Identity: "h:1:a", Info: `{"x":1}`, Busy: "1", Beat: "1.5", Quiet: "false", RSS: "10"}}
	if !slices.Equal(ps, want) {
		t.Fatalf("processes %+v, want %+v", ps, want)
	}
	w, err := ReadWork(c, "h:1:a")
	if err != nil || w["t1"] != `{"queue":"q"}` {
		t.Fatalf("work = %v, %v", w, err)
	}
	if n, _ := redis.Int(db.Do(t, "HLEN", "h:1:a:workers"), nil); n != 1 {
		t.Fatal("legacy workers hash not written")
	}
	if err := ClearProcess(c, "h:1:a"); err != nil {
		t.Fatal(err)
	}
	if n, _ := ProcessCount(c); n != 1 {
		t.Fatalf("process count %d after clear, want 1 (gone:2:b)", n)
	}
	if w, _ := ReadWork(c, "h:1:a"); len(w) != 0 {
		t.Fatal("work hash left")
	}
}

func TestWriteMetrics(t *testing.T) {
	t.Parallel()
	db, c := setup(t)
	hist := make([]uint16, 26)
	hist[0], hist[3] = 2, 1
	err := WriteMetrics(c, []ClassMetrics{
		{Class: "Ok", Buckets: []MetricsBucket{{"j|a", 100}, {"j|b", 200}}, Processed: 3, MS: 0, Succeeded: true,
			HistogramKey: "h|Ok-1-2:3", Histogram: hist, HistogramTTL: 300},
		{Class: "Bad", Buckets: []MetricsBucket{{"j|a", 100}}, Processed: 1, Failed: 1, HistogramKey: "h|Bad-1-2:3"},
	})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := redis.StringMap(db.Do(t, "HGETALL", "j|a"), nil)
	if m["Ok|p"] != "3" || m["Ok|ms"] != "0" || m["Bad|p"] != "1" || m["Bad|f"] != "1" || len(m) != 4 {
		t.Fatalf("j|a = %v", m)
	}
	if ttl, _ := redis.Int(db.Do(t, "TTL", "j|b"), nil); ttl <= 190 {
		t.Fatalf("j|b ttl %d", ttl)
	}
	got, _ := redis.Ints(db.Do(t, "BITFIELD", "h|Ok-1-2:3", "GET", "u16", "#0", "GET", "u16", "#3", "GET", "u16", "#4"), nil)
	if !slices.Equal(got, []int{2, 1, 0}) {
		t.Fatalf("histogram = %v", got)
	}
	if n, _ := redis.Int(db.Do(t, "EXISTS", "h|Bad-1-2:3"), nil); n != 0 {
		t.Fatal("histogram written for a class without a successful run")
	}
}

func TestInflightLenAndOwners(t *testing.T) {
	t.Parallel()
	db, c := setup(t)
	if err := RegisterInflight(c, "h:1:a", []string{"q"}); err != nil {
		t.Fatal(err)
	}
	db.Do(t, "LPUSH", Inflight("h:1:a", "q"), "j1", "j2")
	owners, err := InflightOwners(c)
	if err != nil || !slices.Equal(owners, []Orphan{{"h:1:a", "q"}}) {
		t.Fatalf("owners = %v, %v", owners, err)
	}
	if n, err := InflightLen(c, "h:1:a", "q"); n != 2 || err != nil {
		t.Fatalf("len %d, %v", n, err)
	}
	if ok, _ := Alive(c, "h:1:a"); ok {
		t.Fatal("alive without a heartbeat hash")
	}
}

func TestRangeAndAtScore(t *testing.T) {
	t.Parallel()
	db, c := setup(t)
	db.Do(t, "ZADD", "dead", "1700000000.25", "a", "1700000001.5", "b", "1700000001.5", "c")
	got, err := Range(c, "dead", 0, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[0].Raw) != "c" || got[0].Score != 1700000001.5 || string(got[1].Raw) != "b" {
		t.Fatalf("newest first: %+v", got)
	}
	at, err := AtScore(c, "dead", "1700000001.5")
	if err != nil || !slices.Equal(asStrings(at), []string{"b", "c"}) {
		t.Fatalf("at score = %q, %v", asStrings(at), err)
	}
}

// Nothing to add writes nothing: an idle process does not touch the
// counters' TTLs.
func TestFlushStatsNothingWritesNothing(t *testing.T) {
	t.Parallel()
	db, c := setup(t)
	if err := FlushStats(c, time.Now(), 0, 0); err != nil {
		t.Fatal(err)
	}
	if keys, _ := redis.Strings(db.Do(t, "KEYS", "*"), nil); len(keys) != 0 {
		t.Fatalf("wrote %q", keys)
	}
}

// RequeueMany leaves each queue as it was before the jobs were fetched:
// the first fetched ends rightmost (next to run); reliable fetch also
// takes them off the in-flight lists, in the same transaction.
func TestRequeueManyRestoresQueueOrder(t *testing.T) {
	t.Parallel()
	for _, reliable := range []bool{true, false} {
		db, c := setup(t)
		db.Do(t, "LPUSH", Queue("a"), "a5") // pushed after the fetched ones
		if reliable {
			db.Do(t, "LPUSH", Inflight("h:1:a", "a"), "a1", "a2", "a3")
			db.Do(t, "LPUSH", Inflight("h:1:a", "b"), "b1")
		}
		jobs := []AckedJob{{"a", []byte("a1")}, {"a", []byte("a2")}, {"b", []byte("b1")}, {"a", []byte("a3")}}
		if err := RequeueMany(c, "h:1:a", jobs, reliable); err != nil {
			t.Fatal(err)
		}
		if got := strs(t, db.Do(t, "LRANGE", Queue("a"), 0, -1)); !slices.Equal(got, []string{"a5", "a3", "a2", "a1"}) {
			t.Errorf("reliable=%v: queue a = %v", reliable, got)
		}
		if got := strs(t, db.Do(t, "LRANGE", Queue("b"), 0, -1)); !slices.Equal(got, []string{"b1"}) {
			t.Errorf("reliable=%v: queue b = %v", reliable, got)
		}
		for _, q := range []string{"a", "b"} {
			if n, _ := redis.Int(db.Do(t, "LLEN", Inflight("h:1:a", q)), nil); n != 0 {
				t.Errorf("reliable=%v: %d left in flight on %s", reliable, n, q)
			}
		}
	}
}

// FetchMany writes the acknowledgements pipelined ahead of the fetch
// script, also when Redis has forgotten the script (SCRIPT FLUSH, as after
// a restart), and reports them written even when no job is left to fetch.
func TestFetchManyAcksAndFetches(t *testing.T) {
	t.Parallel()
	db, c := setup(t)
	const id = "h:1:a"
	db.Do(t, "LPUSH", Queue("q"), "j1", "j2", "j3")
	got, ackedOK, err := FetchMany(c, id, []string{"q"}, [][]int{{0}, {0}}, nil)
	if err != nil || !ackedOK || len(got) != 2 || string(got[0].Job) != "j1" || string(got[1].Job) != "j2" {
		t.Fatalf("first fetch: %v %v %v", got, ackedOK, err)
	}
	db.Do(t, "SCRIPT", "FLUSH")
	got, ackedOK, err = FetchMany(c, id, []string{"q"}, [][]int{{0}, {0}}, []AckedJob{{"q", []byte("j1")}, {"q", []byte("j2")}})
	if err != nil || !ackedOK || len(got) != 1 || string(got[0].Job) != "j3" {
		t.Fatalf("fetch after SCRIPT FLUSH: %v %v %v", got, ackedOK, err)
	}
	if got := strs(t, db.Do(t, "LRANGE", Inflight(id, "q"), 0, -1)); !slices.Equal(got, []string{"j3"}) {
		t.Fatalf("in flight after the acknowledgements: %v", got)
	}
	got, ackedOK, err = FetchMany(c, id, []string{"q"}, [][]int{{0}}, []AckedJob{{"q", []byte("j3")}})
	if err != nil || !ackedOK || len(got) != 0 {
		t.Fatalf("fetch of an empty queue: %v %v %v", got, ackedOK, err)
	}
	if n, _ := redis.Int(db.Do(t, "LLEN", Inflight(id, "q")), nil); n != 0 {
		t.Fatalf("%d left in flight", n)
	}
	// An acknowledgement for a queue not fetched here sends nothing.
	if _, _, err := FetchMany(c, id, []string{"q"}, [][]int{{0}}, []AckedJob{{"other", []byte("x")}}); err == nil {
		t.Fatal("acknowledgement of another queue accepted")
	}
	if v, err := redis.String(c.Do("PING")); err != nil || v != "PONG" {
		t.Fatalf("connection left with pending replies: %q %v", v, err)
	}
}

// Both fetch scripts serve both fetch modes: reliable fetch moves each job
// onto its queue's in-flight list, basic fetch pops it; with one order per
// job (weighted queues) each job comes from the first non-empty queue of
// its order, and in bulk (one order) the oldest jobs come first.
func TestFetchManyBothModesBothScripts(t *testing.T) {
	t.Parallel()
	for _, identity := range []string{"h:1:a", ""} {
		db, c := setup(t)
		db.Do(t, "LPUSH", Queue("a"), "a1", "a2")
		db.Do(t, "LPUSH", Queue("b"), "b1", "b2", "b3")
		// One order per job: a first, then b first, then a first again.
		got, _, err := FetchMany(c, identity, []string{"a", "b"}, [][]int{{0, 1}, {1, 0}, {0, 1}, {0, 1}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, g := range got {
			names = append(names, string(g.Job))
		}
		if !slices.Equal(names, []string{"a1", "b1", "a2", "b2"}) {
			t.Errorf("identity %q: per-job orders took %v", identity, names)
		}
		// Bulk: b then a, as many as asked; only b3 is left.
		db.Do(t, "LPUSH", Queue("a"), "a3")
		got, _, err = FetchMany(c, identity, []string{"a", "b"}, [][]int{{1, 0}, {1, 0}, {1, 0}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		names = names[:0]
		for _, g := range got {
			names = append(names, string(g.Job))
		}
		if !slices.Equal(names, []string{"b3", "a3"}) {
			t.Errorf("identity %q: bulk took %v", identity, names)
		}
		wantA, wantB := []string{"a3", "a2", "a1"}, []string{"b3", "b2", "b1"}
		if identity == "" {
			wantA, wantB = nil, nil
		}
		if got := strs(t, db.Do(t, "LRANGE", Inflight(identity, "a"), 0, -1)); !slices.Equal(got, wantA) {
			t.Errorf("identity %q: in flight on a: %v", identity, got)
		}
		if got := strs(t, db.Do(t, "LRANGE", Inflight(identity, "b"), 0, -1)); !slices.Equal(got, wantB) {
			t.Errorf("identity %q: in flight on b: %v", identity, got)
		}
	}
}
