package sidekiq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

// TV3: a real 6.4.1 payload.
const tv3 = `{"retry":3,"queue":"report-0123456789abcdef","backtrace":5,"tags":["csv"],"args":[{"a":1},"xlsx",42],"class":"HardJob","jid":"b11eb8e2f6f1f998501f11ed","created_at":1795734486.1169493,"enqueued_at":1795734486.117016}`

// TV4: mixed formats from a 6.4.1 scheduler moving a Go job.
const tv4 = `{"retry":3,"queue":"report-0123456789abcdef","class":"Report::FinalizeReportJob","args":["/tmp/reports/t","xlsx",1,"t",10,43200,1700000000],"jid":"aaaaaaaaaaaaaaaaaaaaaaaa","created_at":1700000000123,"x_custom":{"k":[1,2]},"enqueued_at":1795734718.3666072}`

func TestParseRealPayloads(t *testing.T) {
	j, err := ParseJob([]byte(tv3))
	if err != nil {
		t.Fatal(err)
	}
	if j.Class != "HardJob" || len(j.Args) != 3 || j.Queue != "report-0123456789abcdef" || string(j.Retry) != "3" {
		t.Fatalf("%+v", j)
	}
	ca, ok := j.Time("created_at")
	if !ok || ca.Unix() != 1795734486 || ca.Nanosecond()/1e6 != 116 {
		t.Fatalf("created_at %v", ca)
	}
	j4, err := ParseJob([]byte(tv4))
	if err != nil {
		t.Fatal(err)
	}
	if ca, _ := j4.Time("created_at"); !ca.Equal(time.Date(2023, 11, 14, 22, 13, 20, 123e6, time.UTC)) {
		t.Fatalf("int ms created_at: %v", ca)
	}
	if ea, _ := j4.Time("enqueued_at"); ea.Unix() != 1795734718 {
		t.Fatalf("float enqueued_at: %v", ea)
	}
	out, err := j4.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"x_custom":{"k":[1,2]}`, `1700000000]`, `"created_at":1700000000123`, `"enqueued_at":1795734718.3666072`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("re-encoded payload lost %s: %s", want, out)
		}
	}
}

func TestDialectTimestamps(t *testing.T) {
	at := time.Unix(1795734486, 0)
	if got := string(Dialect8.Timestamp(at)); got != "1795734486000" {
		t.Fatalf("v8: %s", got)
	}
	// TV2: a whole second must still be a float for 6.x/7.x readers.
	if got := string(Dialect7.Timestamp(at)); got != "1795734486.0" {
		t.Fatalf("v7: %s", got)
	}
	if got := string(Dialect6.Timestamp(at.Add(117 * time.Millisecond))); !strings.HasPrefix(got, "1795734486.117") {
		t.Fatalf("v6: %s", got)
	}
}

// A job without args runs as perform() in Ruby and keeps its args key as
// it was (absent or null) when written back to the retry or dead set.
func TestParseJobWithoutArgs(t *testing.T) {
	for in, want := range map[string]string{
		`{"class":"X","jid":"j","queue":"q"}`:             `{"class":"X","queue":"q","jid":"j","retry":true}`,
		`{"class":"X","jid":"j","queue":"q","args":null}`: `{"class":"X","queue":"q","jid":"j","args":null,"retry":true}`,
		`{"class":"X","jid":"j","queue":"q","args":[]}`:   `{"class":"X","queue":"q","jid":"j","args":[],"retry":true}`,
	} {
		j, err := ParseJob([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if len(j.Args) != 0 {
			t.Errorf("%s: args %v", in, j.Args)
		}
		out, err := j.Clone().Encode()
		if err != nil || string(out) != want {
			t.Errorf("%s re-encoded as %s (%v), want %s", in, out, err, want)
		}
	}
	built := &Job{Class: "X", Queue: "q", JID: "j"}
	if out, _ := built.Encode(); !strings.Contains(string(out), `"args":[]`) {
		t.Errorf("a job built in Go must carry args: %s", out)
	}
}

func TestNewJobRefusesNonJSONArgs(t *testing.T) {
	type withTime struct{ At time.Time }
	cases := []any{make(chan int), func() {}, zeroDiv(), complex(1, 2), map[float64]int{1.5: 1},
		map[int]string{1: "a"}, time.Now(), []any{1, time.Now()}, map[string]any{"t": time.Now()},
		withTime{time.Now()}, []byte("x"), &withTime{}}
	for i, a := range cases {
		if _, err := NewJob("X", a); !errors.Is(err, ErrBadArgs) {
			t.Errorf("case %d: %T accepted (%v)", i, a, err)
		}
	}
	type row struct {
		A string `json:"a"`
		N []int
	}
	if _, err := NewJob("X", json.RawMessage(`{"a":1}`), json.Number("12"), row{"x", []int{1}}, &row{}, []string{"a"}, (*row)(nil)); err != nil {
		t.Fatal(err)
	}
}

func zeroDiv() float64 {
	var z float64
	return z / z
}

func TestParseJobRejectsGarbage(t *testing.T) {
	for _, in := range []string{"not json", "[]", "null", `{"args":[]}`, `{"class":"X","args":{}}`, `{"class":1,"args":[]}`} {
		if _, err := ParseJob([]byte(in)); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
}

func TestEncodeKeepsUTF8AndHTML(t *testing.T) {
	j, _ := NewJob("X", map[string]string{"個別識別番号": "<A&B>"})
	j.JID, j.Queue = "j", "q"
	out, _ := j.Encode()
	if !strings.Contains(string(out), `{"個別識別番号":"<A&B>"}`) {
		t.Fatalf("%s", out)
	}
}

func TestActiveJobDecoding(t *testing.T) {
	// TV14 and TV15.
	payload := `{"retry":true,"queue":"report","class":"Sidekiq::ActiveJob::Wrapper","wrapped":"SplitCsvJob","args":[{"job_class":"SplitCsvJob","job_id":"6c0f6a64-3c9e-4f63-9a57-2b2f2e0c9d11","provider_job_id":null,"queue_name":"report","priority":null,"arguments":["氏名,年度\n山田,2024\n","xlsx",7,{"_aj_globalid":"gid://parallel-sidekiq/User/42"},{"sym":1,"_aj_symbol_keys":["sym"]},{"kw1":"v","_aj_ruby2_keywords":["kw1"]},{"_aj_serialized":"ActiveJob::Serializers::SymbolSerializer","value":"a_symbol"},{"_aj_serialized":"ActiveJob::Serializers::TimeWithZoneSerializer","value":"2024-05-01T21:00:00.000000000+09:00","time_zone":"Asia/Tokyo"}],"executions":0,"exception_executions":{},"locale":"ja","timezone":"Asia/Tokyo","enqueued_at":"2025-06-01T03:00:00.123456789Z","scheduled_at":null}],"jid":"9f86d081884c7d659a2feaa0","created_at":1748746800123,"enqueued_at":1748746800124}`
	for _, class := range []string{ActiveJobWrapper, ActiveJobLegacyWrapper} {
		j, err := ParseJob([]byte(strings.Replace(payload, ActiveJobWrapper, class, 1)))
		if err != nil {
			t.Fatal(err)
		}
		if j.HandlerClass() != "SplitCsvJob" {
			t.Fatalf("handler class %s", j.HandlerClass())
		}
		var csv, typ, gid, sym, tm string
		var id int
		var m1, m2 map[string]any
		if err := j.ScanArgs(&csv, &typ, &id, &gid, &m1, &m2, &sym, &tm); err != nil {
			t.Fatal(err)
		}
		if csv != "氏名,年度\n山田,2024\n" || typ != "xlsx" || id != 7 || gid != "gid://parallel-sidekiq/User/42" ||
			len(m1) != 1 || m1["sym"] != float64(1) || len(m2) != 1 || m2["kw1"] != "v" || sym != "a_symbol" ||
			tm != "2024-05-01T12:00:00Z" {
			t.Fatalf("decoded: %q %q %d %q %v %v %q %q", csv, typ, id, gid, m1, m2, sym, tm)
		}
		var a, b string
		if err := j.ScanArgs(&a, &b); err == nil {
			t.Fatal("arg count mismatch accepted")
		}
	}
}

func TestNewActiveJobShape(t *testing.T) {
	j, err := NewActiveJob(Dialect7, "SplitCsvJob", "report", "a,b\n1,2\n", "xlsx", 42, map[string]any{"k": 1})
	if err != nil {
		t.Fatal(err)
	}
	if j.Class != ActiveJobLegacyWrapper || j.StringField("wrapped") != "SplitCsvJob" {
		t.Fatalf("%+v", j)
	}
	var env map[string]any
	json.Unmarshal(j.Args[0], &env)
	args := env["arguments"].([]any)
	if args[2].(float64) != 42 || args[3].(map[string]any)["_aj_symbol_keys"] == nil {
		t.Fatalf("envelope %s", j.Args[0])
	}
	var s1, s2 string
	var n int
	var m map[string]int
	if err := j.ScanArgs(&s1, &s2, &n, &m); err != nil || m["k"] != 1 || n != 42 {
		t.Fatalf("round trip: %v %v", err, m)
	}
}

func TestBacktraceVector(t *testing.T) {
	// TV9.
	lines := []string{"a.rb:1:in `x'", "b.rb:2:in `y'"}
	enc, err := EncodeBacktrace(lines)
	if err != nil || !strings.HasPrefix(enc, "eJ") || strings.Contains(enc, "\n") {
		t.Fatalf("want strict base64 of zlib (78 9c): %s %v", enc, err)
	}
	// Ruby's own encoding of the same lines (Sidekiq 7.2.1+), with and
	// without the MIME newline older versions wrote, and the 6.x raw array.
	ruby := "eJyLVkrUK0qyMrTKzFNIqFBX0lFKAvGNwPxKdaVYAKC2CWw="
	for _, in := range []string{`"` + enc + `"`, `"` + ruby + `"`, `"` + ruby + `\n"`, `["a.rb:1:in ` + "`x'" + `","b.rb:2:in ` + "`y'" + `"]`} {
		got, err := DecodeBacktrace(json.RawMessage(in))
		if err != nil || len(got) != 2 || got[1] != lines[1] {
			t.Fatalf("%s: %v %v", in, got, err)
		}
	}
}

// A payload nested deeper than Ruby's JSON max_nesting (100, the job's
// object included) is bad JSON, as Sidekiq.load_json raises
// JSON::NestingError on it; 100 levels parse.
func TestParseJobNestingLimit(t *testing.T) {
	nested := func(levels int) []byte { // the job object plus levels arrays in args
		return []byte(`{"class":"X","args":` + strings.Repeat("[", levels) + strings.Repeat("]", levels) + `}`)
	}
	if _, err := ParseJob(nested(99)); err != nil {
		t.Fatalf("100 levels: %v", err)
	}
	if _, err := ParseJob(nested(100)); !errors.Is(err, ErrBadPayload) || !strings.Contains(err.Error(), "nested deeper than 100") {
		t.Fatalf("101 levels: %v", err)
	}
	deepField := []byte(`{"class":"X","args":[],"x":` + strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100) + `}`)
	if _, err := ParseJob(deepField); !errors.Is(err, ErrBadPayload) {
		t.Fatalf("101 levels in another field: %v", err)
	}
}

func FuzzParseJob(f *testing.F) {
	f.Add([]byte(tv3))
	f.Add([]byte(tv4))
	f.Add([]byte(`{"class":"X","args":[],"retry":false}`))
	f.Add([]byte(`{"class":"X","args":null,"queue":null,"jid":"a\xffb","class":"Y","x":{"y":[1,2.50]}}`))
	f.Add([]byte(`{"class":"X","args":[1, "two" ,{"a":null}],"retry":3} `))
	f.Add([]byte(`{"class":"0"}`)) // no args: parsed, as Ruby runs perform()
	f.Add([]byte(`{"class":"X","args":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := ParseJob(data)
		// encoding/json, which ParseJob replaced, is the oracle.
		std, stdErr := parseJobStd(data)
		if (err == nil) != (stdErr == nil) {
			t.Fatalf("ParseJob error %v, encoding/json error %v, on %q", err, stdErr, data)
		}
		if err != nil {
			return
		}
		if j.Class != std.Class || j.Queue != std.Queue || j.JID != std.JID || string(j.Retry) != string(std.Retry) ||
			!reflect.DeepEqual(j.Args, std.Args) || !reflect.DeepEqual(j.Fields, std.Fields) {
			t.Fatalf("ParseJob %+v, encoding/json %+v, on %q", j, std, data)
		}
		out, err := j.Encode()
		if err != nil {
			t.Fatalf("encode after parse: %v", err)
		}
		j2, err := ParseJob(out)
		if err != nil {
			t.Fatalf("re-parse: %v: %s", err, out)
		}
		if j2.Class != j.Class || len(j2.Args) != len(j.Args) || len(j2.Fields) != len(j.Fields) {
			t.Fatalf("round trip changed the job: %s -> %s", data, out)
		}
		for k := range j.Fields {
			if _, ok := j2.Fields[k]; !ok {
				t.Fatalf("field %s lost", k)
			}
		}
		_, _ = j.Arguments()
	})
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote\back`, "ctl\x00\x01\x1f\n\r\t", "日本語<&>", "bad\xffutf8", "line\u2028sep\u2029", strings.Repeat("x", 300)} {
		want, _ := encodeJSON(s)
		if got := string(appendJSONString(nil, s)); got != string(want) {
			t.Errorf("%q: got %s want %s", s, got, want)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	j, _ := NewJob("Report::ProcessCsvRowJob", map[string]string{"個別識別番号": "A-0001", "年度": "2024"}, "xlsx", 42, "/tmp/reports/x", "0f8fad5b-d9cb-469f-a165-70867728950e")
	j.Queue, j.JID = "report-0123456789abcdef", NewJID()
	j.SetTime("created_at", time.Now(), Dialect8)
	j.SetTime("enqueued_at", time.Now(), Dialect8)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := j.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

// parseJobStd is ParseJob as it was on encoding/json: the oracle of FuzzParseJob.
func parseJobStd(data []byte) (*Job, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrBadPayload)
	}
	// Ruby's JSON.parse refuses nesting deeper than 100 (max_nesting).
	dec := json.NewDecoder(bytes.NewReader(data))
	for depth := 0; ; {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if depth++; depth > 100 {
				return nil, fmt.Errorf("%w: nested deeper than 100", ErrBadPayload)
			}
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	j := &Job{raw: data}
	if err := takeString(m, "class", &j.Class); err != nil || j.Class == "" {
		return nil, fmt.Errorf("%w: no class", ErrBadPayload)
	}
	if err := takeString(m, "queue", &j.Queue); err != nil {
		return nil, err
	}
	if err := takeString(m, "jid", &j.JID); err != nil {
		return nil, err
	}
	if a, ok := m["args"]; ok {
		if err := json.Unmarshal(a, &j.Args); err != nil {
			return nil, fmt.Errorf("%w: args is not an array", ErrBadPayload)
		}
		delete(m, "args")
	} // no "args": Ruby runs perform() (Sidekiq 8.0.6 processor.rb), so it parses
	if r, ok := m["retry"]; ok {
		j.Retry = r
		delete(m, "retry")
	}
	j.Fields = m
	return j, nil
}

func takeString(m map[string]json.RawMessage, key string, dst *string) error {
	v, ok := m[key]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return fmt.Errorf("%w: %s is not a string", ErrBadPayload, key)
	}
	delete(m, key)
	return nil
}

func BenchmarkParseJob(b *testing.B) {
	raw := []byte(`{"retry":true,"queue":"bench","args":[1,"two"],"class":"Pallarel::NoopJob","jid":"0123456789abcdef01234567","created_at":1764500000123,"enqueued_at":1764500000456,"tags":["a"],"retry_for":3600}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseJob(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// The client refuses a payload nested deeper than Ruby's JSON max_nesting
// (100, the job's object counting as one), as Sidekiq::Client does
// (JSON.generate raises JSON::NestingError): no Sidekiq could parse it.
func TestPushRefusesPayloadNestedDeeperThanRuby(t *testing.T) {
	db := redistest.New(t)
	c := NewClient(db.Pool, ClientOptions{})
	nested := func(levels int) json.RawMessage { // one argument of that many levels
		return json.RawMessage(strings.Repeat("[", levels) + strings.Repeat("]", levels))
	}
	ok := &Job{Class: "X", Queue: "q", Args: []json.RawMessage{nested(98)}} // 1 + 1 + 98 = 100
	if _, err := c.Push(context.Background(), ok); err != nil {
		t.Fatalf("100 levels: %v", err)
	}
	deep := &Job{Class: "X", Queue: "q", Args: []json.RawMessage{json.RawMessage(" " + string(nested(99)))}}
	if _, err := c.Push(context.Background(), deep); !errors.Is(err, ErrBadArgs) || !strings.Contains(err.Error(), "nested deeper than 100") {
		t.Fatalf("101 levels: %v", err)
	}
	field := &Job{Class: "X", Queue: "q", Fields: map[string]json.RawMessage{"x": nested(100)}}
	if _, err := c.Push(context.Background(), field); !errors.Is(err, ErrBadArgs) {
		t.Fatalf("101 levels in a field: %v", err)
	}
	if n, _ := redis.Int(db.Do(t, "LLEN", "queue:q"), nil); n != 1 {
		t.Fatalf("queue holds %d jobs, want the one of 100 levels", n)
	}
	// What was pushed parses back.
	raw, _ := redis.Bytes(db.Do(t, "LINDEX", "queue:q", 0), nil)
	if _, err := ParseJob(raw); err != nil {
		t.Fatalf("pushed payload: %v", err)
	}
}
