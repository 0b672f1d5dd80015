package interop

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/sidekiq"
)

// diffCase is one payload run through Ruby Sidekiq and through Go.
type diffCase struct {
	name     string
	payload  string
	schedule bool // put in the schedule set for the poller, not on the queue
	// check asserts what the Ruby run left, so that an equal but wrong Go
	// run cannot pass (and a change in Ruby shows up here).
	check func(t *testing.T, st redisState)
}

const diffQueue = "diff"

// diffCases are the eleven differences of issue 9 that leave Redis state,
// and the JSON nesting limit found later.
func diffCases(d sidekiq.Dialect) []diffCase {
	now := time.Now()
	ts := func(t time.Time) string { return string(d.Timestamp(t)) }
	job := func(jid, class string, extra string) string {
		return `{"class":"` + class + `","queue":"` + diffQueue + `","jid":"` + jid + `","created_at":` + ts(now.Add(-time.Hour)) + extra + `}`
	}
	retried := func(t *testing.T, st redisState) map[string]any { return st.onlyMember(t, retrySet) }
	long := strings.Repeat("é", 12000)
	return []diffCase{
		{name: "retry_for_expired", payload: job("a00000000000000000000001", "DiffFailJob",
			`,"args":[],"retry":true,"retry_for":60,"retry_count":1,"failed_at":`+ts(now.Add(-2*time.Minute))),
			check: func(t *testing.T, st redisState) { st.onlyMember(t, deadSet); st.empty(t, retrySet) }},
		{name: "retry_for_running", payload: job("a00000000000000000000002", "DiffFailJob",
			`,"args":[],"retry":true,"retry_for":3600,"retry_count":1,"failed_at":`+ts(now.Add(-2*time.Minute))),
			check: func(t *testing.T, st redisState) { retried(t, st) }},
		{name: "unknown_class_retry_true", payload: job("a00000000000000000000003", "DiffNopeJob", `,"args":[1],"retry":true`),
			check: func(t *testing.T, st redisState) {
				if m := retried(t, st); m["error_class"] != "NameError" {
					t.Errorf("error_class %v", m["error_class"])
				}
			}},
		{name: "unknown_class_retry_absent", payload: job("a00000000000000000000004", "DiffNopeJob", `,"args":[1]`),
			check: func(t *testing.T, st redisState) {
				st.empty(t, retrySet)
				st.empty(t, deadSet)
				st.equal(t, "stat:failed", "1")
			}},
		{name: "missing_args_runs", payload: job("a00000000000000000000005", "DiffOkJob", `,"retry":true`),
			check: func(t *testing.T, st redisState) { st.equal(t, "stat:processed", "1"); st.equal(t, "stat:failed", "0") }},
		{name: "missing_args_fails", payload: job("a00000000000000000000006", "DiffFailJob", `,"retry":true`),
			check: func(t *testing.T, st redisState) {
				if _, ok := retried(t, st)["args"]; ok {
					t.Errorf("args appeared in the retry entry")
				}
			}},
		{name: "bad_json", payload: `{"class":"DiffOkJob","args":[`,
			check: func(t *testing.T, st redisState) { st.onlyMember(t, deadSet); st.absent(t, "stat:processed") }},
		// Sidekiq.load_json keeps JSON.parse's max_nesting of 100: a
		// payload nested deeper is bad JSON (JSON::NestingError).
		{name: "nested_101_is_bad_json", payload: job("a00000000000000000000015", "DiffOkJob",
			`,"args":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)),
			check: func(t *testing.T, st redisState) { st.onlyMember(t, deadSet); st.absent(t, "stat:processed") }},
		{name: "nested_100_runs", payload: job("a00000000000000000000016", "DiffOkJob",
			`,"args":`+strings.Repeat("[", 99)+strings.Repeat("]", 99)),
			check: func(t *testing.T, st redisState) { st.equal(t, "stat:processed", "1"); st.equal(t, "stat:failed", "0") }},
		{name: "error_message_characters", payload: job("a00000000000000000000007", "DiffFailJob", `,"args":["`+long+`"],"retry":true`),
			check: func(t *testing.T, st redisState) {
				if m, _ := retried(t, st)["error_message"].(string); len([]rune(m)) != 10000 {
					t.Errorf("error_message has %d characters", len([]rune(m)))
				}
			}},
		{name: "backtrace_3", payload: job("a00000000000000000000008", "DiffFailJob", `,"args":[],"retry":true,"backtrace":3`),
			check: func(t *testing.T, st redisState) {
				if bt := retried(t, st)["error_backtrace"]; bt != "<3 lines>" {
					t.Errorf("error_backtrace %v", bt)
				}
			}},
		{name: "retry_null", payload: job("a00000000000000000000009", "DiffFailJob", `,"args":[],"retry":null`),
			check: func(t *testing.T, st redisState) {
				if r := retried(t, st)["retry"]; r != true {
					t.Errorf("retry %v", r)
				}
			}},
		{name: "metrics_histogram", payload: job("a00000000000000000000010", "DiffOkJob", `,"args":[],"retry":true`),
			check: func(t *testing.T, st redisState) {
				if d >= sidekiq.Dialect8 {
					st.equal(t, "h|DiffOkJob-<window>", "<1 runs>")
				}
			}},
		// The rest of job_retry.rb's table (sidekiq.Decide).
		{name: "retry_false_dropped", payload: job("a00000000000000000000012", "DiffFailJob", `,"args":[],"retry":false`),
			check: func(t *testing.T, st redisState) {
				st.empty(t, retrySet)
				st.empty(t, deadSet)
				st.equal(t, "stat:failed", "1")
			}},
		{name: "exhausted_dead_false", payload: job("a00000000000000000000013", "DiffFailJob", `,"args":[],"retry":1,"retry_count":0,"dead":false,"failed_at":`+ts(now.Add(-time.Minute))),
			check: func(t *testing.T, st redisState) { st.empty(t, retrySet); st.empty(t, deadSet) }},
		{name: "unknown_class_retry_0", payload: job("a00000000000000000000014", "DiffNopeJob", `,"args":[],"retry":0`),
			check: func(t *testing.T, st redisState) { st.onlyMember(t, deadSet) }},
		{name: "scheduled_created_at", schedule: true,
			payload: `{"class":"DiffOkJob","queue":"` + diffQueue + `","jid":"a00000000000000000000011","args":[1],"retry":true}`,
			check: func(t *testing.T, st redisState) {
				if m := st.onlyMember(t, "queue:"+diffQueue); m["created_at"] == nil || m["enqueued_at"] == nil {
					t.Errorf("enqueued without created_at or enqueued_at: %v", m)
				}
			}},
	}
}

const (
	retrySet = "retry"
	deadSet  = "dead"
)

// rubyError is a Go handler's error that Ruby would raise as RuntimeError.
type rubyError string

func (e rubyError) Error() string      { return string(e) }
func (e rubyError) ErrorClass() string { return "RuntimeError" }

// TestDifferentialSidekiq sends each payload through real Ruby Sidekiq and
// through the Go server in the same dialect, and compares every key the
// two leave in Redis, timestamps and timings reduced to their form.
func TestDifferentialSidekiq(t *testing.T) {
	for _, tc := range []struct {
		version string
		dialect sidekiq.Dialect
	}{{"8", sidekiq.Dialect8}, {"7", sidekiq.Dialect7}} {
		t.Run("sidekiq"+tc.version, func(t *testing.T) {
			t.Parallel()
			cases := diffCases(tc.dialect)
			scratch := redistest.New(t)
			rubyDBs := make([]*redistest.DB, len(cases))
			var spec []map[string]any
			for i, c := range cases {
				rubyDBs[i] = redistest.New(t)
				spec = append(spec, map[string]any{"name": c.name, "db": rubyDBs[i].N, "queue": diffQueue,
					"payload": c.payload, "schedule": c.schedule})
			}
			b, _ := json.Marshal(spec)
			file := filepath.Join(e2etest.RubyDir(t), "diff-cases-"+tc.version+"-"+strconv.Itoa(scratch.N)+".json")
			if err := os.WriteFile(file, b, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(file) })
			var res struct{ Version string }
			rubyResult(t, tc.version, "testdata/differential.rb", &res, "REDIS_URL="+scratch.URL(), "DIFF_CASES="+file)
			if !strings.HasPrefix(res.Version, tc.version+".") {
				t.Fatalf("ran Sidekiq %s, want %s.x", res.Version, tc.version)
			}
			for i, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					ruby := readState(t, rubyDBs[i], time.Now())
					c.check(t, ruby)
					goDB := redistest.New(t)
					runGo(t, goDB, tc.dialect, c)
					got := readState(t, goDB, time.Now())
					if diff := ruby.diff(got); diff != "" {
						t.Errorf("Redis state differs (ruby ≠ go):\n%s", diff)
					}
				})
			}
		})
	}
}

// runGo seeds the case the way the Ruby script did and runs a Go server
// until the job has settled, then stops it (which flushes stats and
// metrics) and clears the keys only Go writes (its heartbeat).
func runGo(t *testing.T, db *redistest.DB, d sidekiq.Dialect, c diffCase) {
	t.Helper()
	reg := sidekiq.NewRegistry()
	mustRegister(t, reg, func(context.Context, *sidekiq.Job) error { return nil }, "DiffOkJob")
	mustRegister(t, reg, func(_ context.Context, j *sidekiq.Job) error {
		var msg string
		if len(j.Args) > 0 {
			_ = json.Unmarshal(j.Args[0], &msg)
		}
		if msg == "" {
			msg = "boom"
		}
		return rubyError(msg)
	}, "DiffFailJob")
	queue := diffQueue
	if c.schedule {
		queue = "elsewhere" // the poller moves the job; nothing runs it
		db.Do(t, "ZADD", "schedule", float64(time.Now().Add(-time.Second).UnixNano())/1e9, c.payload)
	} else {
		db.Do(t, "SADD", "queues", diffQueue)
		db.Do(t, "LPUSH", "queue:"+diffQueue, c.payload)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := sidekiq.NewServer(db.Pool, reg, sidekiq.Options{
		Queues: []sidekiq.QueueWeight{{Name: queue}}, Dialect: d, Concurrency: 1,
		PollAverage: 100 * time.Millisecond, HeartbeatInterval: 20 * time.Second, Timeout: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	waitFor(t, 20*time.Second, "the job settled", func() bool {
		if c.schedule {
			return redisInt(t, db, "ZCARD", "schedule") == 0
		}
		return redisInt(t, db, "LLEN", "queue:"+diffQueue) == 0 &&
			redisInt(t, db, "LLEN", "pallarel:inflight|"+srv.Identity()+"|"+diffQueue) == 0
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("go server: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("go server did not stop")
	}
	// Pallarel's reliable-fetch index, and the heartbeat hash that Ruby's
	// clear_heartbeat leaves to expire too: the process keys, not the job's.
	db.Do(t, "DEL", "pallarel:inflight", srv.Identity())
}

// redisState is every key of a database, reduced so that two runs at
// different moments compare equal when they did the same thing.
type redisState map[string]any

var (
	dailyStat  = regexp.MustCompile(`^stat:(processed|failed):\d{4}-\d\d-\d\d$`)
	metricKey  = regexp.MustCompile(`^j\|(\d+)\|\d+:(\d+)$`)
	histogram8 = regexp.MustCompile(`^h\|(.+)-\d+-\d+:\d+$`)
	histogram7 = regexp.MustCompile(`^([A-Z][A-Za-z:]*)-\d\d-\d\d:\d+$`)
)

func readState(t *testing.T, db *redistest.DB, now time.Time) redisState {
	t.Helper()
	keys, err := redis.Strings(db.Do(t, "KEYS", "*"), nil)
	if err != nil {
		t.Fatal(err)
	}
	st := redisState{}
	for _, k := range keys {
		typ := redisString(t, db, "TYPE", k)
		name := k
		var v any
		switch typ {
		case "string":
			s := redisString(t, db, "GET", k)
			v = s
			if m := histogram8.FindStringSubmatch(k); m != nil {
				name, v = "h|"+m[1]+"-<window>", histogramRuns(s)
			} else if m := histogram7.FindStringSubmatch(k); m != nil {
				name, v = m[1]+"-<window>", histogramRuns(s)
			}
		case "hash":
			h, _ := redis.StringMap(db.Do(t, "HGETALL", k), nil)
			fields := map[string]string{}
			for f, x := range h {
				if strings.HasSuffix(f, "|ms") {
					x = "<ms>"
				}
				fields[f] = x
			}
			v = fields
		case "list":
			items, _ := redis.Strings(db.Do(t, "LRANGE", k, 0, -1), nil)
			var out []any
			for _, it := range items {
				out = append(out, normalJob(it, now))
			}
			v = out
		case "set":
			m, _ := redis.Strings(db.Do(t, "SMEMBERS", k), nil)
			slices.Sort(m)
			v = m
		case "zset":
			m, _ := redis.Strings(db.Do(t, "ZRANGE", k, 0, -1, "WITHSCORES"), nil)
			var out []any
			for i := 0; i+1 < len(m); i += 2 {
				score, _ := strconv.ParseFloat(m[i+1], 64)
				out = append(out, map[string]any{"job": normalJob(m[i], now), "score": normalScore(k, score, now)})
			}
			v = out
		default:
			v = "<" + typ + ">"
		}
		switch {
		case dailyStat.MatchString(k):
			name = k[:strings.LastIndexByte(k, ':')] + ":<today>"
		case metricKey.MatchString(k):
			// 8.x: j|YYMMDD|H:MM (minute), j|YYMMDD|H:M (ten minutes);
			// 7.x: j|YYYYMMDD|H:M (minute).
			m := metricKey.FindStringSubmatch(k)
			if len(m[1]) == 6 && len(m[2]) == 1 {
				name = "j|<10 minutes>"
			} else {
				name = "j|<minute>"
			}
		}
		ttl := redisInt(t, db, "TTL", k)
		if ttl > 0 {
			st[name+" (ttl)"] = true
		}
		st[name] = v
	}
	return st
}

// histogramRuns sums the u16 counters of a Sidekiq histogram.
func histogramRuns(s string) string {
	b := []byte(s)
	n := 0
	for i := 0; i+1 < len(b); i += 2 {
		n += int(binary.BigEndian.Uint16(b[i:]))
	}
	return fmt.Sprintf("<%d runs>", n)
}

// normalJob decodes a job, replacing fresh timestamps by their form and a
// backtrace by its line count; anything not JSON stays as it is.
func normalJob(s string, now time.Time) any {
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if dec.Decode(&m) != nil {
		return s
	}
	for _, f := range []string{"created_at", "enqueued_at", "failed_at", "retried_at"} {
		n, ok := m[f].(json.Number)
		if !ok {
			continue
		}
		ts, form := timestamp(n)
		if d := now.Sub(ts); d < 5*time.Minute && d > -time.Minute {
			m[f] = "<now " + form + ">"
		} else {
			m[f] = "<" + form + " " + ts.Truncate(time.Second).UTC().Format(time.RFC3339) + ">"
		}
	}
	if bt, ok := m["error_backtrace"].(string); ok {
		m["error_backtrace"] = backtraceForm(bt)
	}
	return m
}

func timestamp(n json.Number) (time.Time, string) {
	if strings.ContainsAny(n.String(), ".eE") {
		f, _ := n.Float64()
		return time.Unix(0, int64(f*1e9)), "float seconds"
	}
	i, _ := n.Int64()
	return time.UnixMilli(i), "integer ms"
}

func backtraceForm(s string) string {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "<not base64>"
	}
	zr, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		return "<not zlib>"
	}
	var lines []string
	if err := json.NewDecoder(zr).Decode(&lines); err != nil {
		return "<not JSON>"
	}
	return fmt.Sprintf("<%d lines>", len(lines))
}

// normalScore: a dead entry's score is now; a retry's is now plus Sidekiq's
// delay for its count (at most count⁴ + 15 + jitter).
func normalScore(set string, score float64, now time.Time) string {
	d := time.Unix(0, int64(score*1e9)).Sub(now)
	switch {
	case d < time.Minute && d > -5*time.Minute:
		return "<now>"
	case set == retrySet && d > 0 && d < 2*time.Hour:
		return "<retry delay>"
	}
	return strconv.FormatFloat(score, 'f', -1, 64)
}

// diff lists the keys whose reduced values differ.
func (st redisState) diff(other redisState) string {
	var keys []string
	for k := range st {
		keys = append(keys, k)
	}
	for k := range other {
		if _, ok := st[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out strings.Builder
	for _, k := range keys {
		a, _ := json.Marshal(st[k])
		b, _ := json.Marshal(other[k])
		if !bytes.Equal(a, b) {
			fmt.Fprintf(&out, "%s\n  ruby: %s\n  go:   %s\n", k, clip(a), clip(b))
		}
	}
	return out.String()
}

func clip(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "…"
	}
	return string(b)
}

// onlyMember is the one job in a set or list, failing when there is not
// exactly one.
func (st redisState) onlyMember(t *testing.T, key string) map[string]any {
	t.Helper()
	switch v := st[key].(type) {
	case []any:
		if len(v) == 1 {
			if m, ok := v[0].(map[string]any); ok {
				if j, ok := m["job"].(map[string]any); ok {
					return j
				}
				return m
			}
		}
	}
	t.Fatalf("%s: want exactly one job, the Ruby run left %v", key, st[key])
	return nil
}

func (st redisState) empty(t *testing.T, key string) {
	t.Helper()
	if v, ok := st[key]; ok {
		t.Errorf("%s should be empty or absent after the Ruby run: %v", key, v)
	}
}

func (st redisState) absent(t *testing.T, key string) { t.Helper(); st.empty(t, key) }

func (st redisState) equal(t *testing.T, key, want string) {
	t.Helper()
	if st[key] != want {
		t.Errorf("%s = %v after the Ruby run, want %s", key, st[key], want)
	}
}

// TestRubyStrictArgsMatchNewJob: the arguments Sidekiq 8.0.6's strict_args!
// refuses, NewJob refuses (issue 9, difference 11).
func TestRubyStrictArgsMatchNewJob(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	var ruby map[string]string
	rubyResult(t, "8", "testdata/differential.rb", &ruby, "REDIS_URL="+db.URL(), "MODE=strict")
	goArgs := map[string]any{
		"time": time.Unix(0, 0), "int_keys": map[int]int{1: 2}, "symbol": nil, // Go has no symbols
		"string_keys": map[string]int{"a": 1}, "nested": []any{1, map[string]any{"b": []any{nil, true, 1.5}}},
	}
	// Nesting: Ruby's JSON.generate refuses more than 100 levels in all
	// (max_nesting); Go's client refuses the same push.
	client := sidekiq.NewClient(db.Pool, sidekiq.ClientOptions{})
	for name, levels := range map[string]int{"deep_100": 98, "deep_101": 99} {
		arg := json.RawMessage(strings.Repeat("[", levels) + strings.Repeat("]", levels))
		_, err := client.Push(context.Background(), &sidekiq.Job{Class: "DiffOkJob", Queue: "strict", Args: []json.RawMessage{arg}})
		got := "accepted"
		if err != nil {
			got = "refused"
		}
		if got != ruby[name] {
			t.Errorf("%s: Go %s (%v), Ruby %s", name, got, err, ruby[name])
		}
	}
	for name, arg := range goArgs {
		if name == "symbol" {
			if ruby[name] != "refused" {
				t.Errorf("ruby accepted a symbol")
			}
			continue
		}
		_, err := sidekiq.NewJob("DiffOkJob", arg)
		got := "accepted"
		if err != nil {
			got = "refused"
		}
		if got != ruby[name] {
			t.Errorf("%s: Go %s (%v), Ruby %s", name, got, err, ruby[name])
		}
	}
}

// TestRubySeesGoVersionAsItsOwn: the Web UI's /busy flags a process whose
// version differs from Sidekiq::VERSION; a Go server in each dialect
// reports the version that dialect mirrors (issue 9, difference 10).
func TestRubySeesGoVersionAsItsOwn(t *testing.T) {
	for _, tc := range []struct {
		version string
		dialect sidekiq.Dialect
	}{{"8", sidekiq.Dialect8}, {"7", sidekiq.Dialect7}} {
		t.Run("sidekiq"+tc.version, func(t *testing.T) {
			t.Parallel()
			db := redistest.New(t)
			startServer(t, db, sidekiq.NewRegistry(), sidekiq.Options{Dialect: tc.dialect})
			var res struct {
				Sidekiq   string
				Processes []struct {
					Version string
					Labels  []string
				}
			}
			rubyResult(t, tc.version, "testdata/differential.rb", &res, "REDIS_URL="+db.URL(), "MODE=version")
			if len(res.Processes) != 1 || res.Processes[0].Version != res.Sidekiq ||
				!slices.Contains(res.Processes[0].Labels, "pallarel") {
				t.Fatalf("Sidekiq %s reads processes %+v", res.Sidekiq, res.Processes)
			}
		})
	}
}
