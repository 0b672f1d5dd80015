package sidekiq

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestRetryDelayAndPolicy(t *testing.T) {
	zero := func(int) int { return 0 }
	maxr := func(n int) int { return n - 1 }
	for _, c := range []struct {
		count int
		d     Dialect
		r     func(int) int
		want  time.Duration
	}{
		{0, Dialect8, zero, 15 * time.Second},
		{1, Dialect8, zero, 16 * time.Second},
		{4, Dialect8, zero, 271 * time.Second},
		{1, Dialect8, maxr, 35 * time.Second}, // rand(20) max 19
		{1, Dialect7, maxr, 34 * time.Second}, // rand(10)*2 max 18
	} {
		if got := RetryDelay(c.count, c.d, c.r); got != c.want {
			t.Errorf("RetryDelay(%d, %d) = %v, want %v", c.count, c.d, got, c.want)
		}
	}
	for raw, want := range map[string]RetryPolicy{
		"true": {true, 25}, "": {true, 25}, "false": {}, "3": {true, 3}, "0": {true, 0}, "5.0": {true, 25}, `"5"`: {true, 25},
	} {
		if got := ParseRetry([]byte(raw), 25); got != want {
			t.Errorf("ParseRetry(%s) = %+v, want %+v", raw, got, want)
		}
	}
}

func TestPollInterval(t *testing.T) {
	for _, c := range []struct {
		conf  time.Duration
		procs int
		r     float64
		want  time.Duration
	}{
		{0, 1, 0, 2500 * time.Millisecond},
		{0, 1, 1, 7500 * time.Millisecond},
		{0, 4, 0.5, 20 * time.Second},
		{0, 10, 0.5, 50 * time.Second},
		{time.Second, 20, 1, 2 * time.Second},
	} {
		if got := PollInterval(c.conf, c.procs, func() float64 { return c.r }); got != c.want {
			t.Errorf("PollInterval(%v, %d, %v) = %v, want %v", c.conf, c.procs, c.r, got, c.want)
		}
	}
}

func TestQueueOrder(t *testing.T) {
	strict := newQueueOrder([]QueueWeight{{"a", 0}, {"b", 0}, {"a", 0}})
	if strict.mode != Strict || strings.Join(strict.next(), ",") != "a,b" {
		t.Fatalf("strict: %v %v", strict.mode, strict.next())
	}
	if ModeOf([]QueueWeight{{"a", 1}, {"b", 1}}) != Random {
		t.Fatal("all weights 1 must be random")
	}
	// TV19: a,3 b,1 puts a first about 75% of the time.
	w := newQueueOrder([]QueueWeight{{"a", 3}, {"b", 1}})
	first := 0
	for range 4000 {
		o := w.next()
		if len(o) != 2 {
			t.Fatalf("order %v", o)
		}
		if o[0] == "a" {
			first++
		}
	}
	if first < 2800 || first > 3200 {
		t.Fatalf("a first %d/4000", first)
	}
	_ = rand.IntN
}

func TestParseQueueFlag(t *testing.T) {
	for in, want := range map[string]QueueWeight{"a": {"a", 0}, "a,3": {"a", 3}, "report-0123456789abcdef,1": {"report-0123456789abcdef", 1}} {
		if got, err := ParseQueueFlag(in); err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "a,x", "a,-1", "a b", ","} {
		if _, err := ParseQueueFlag(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseFileConfig(t *testing.T) {
	yml := `
:concurrency: <%= ENV.fetch("SIDEKIQ_CONCURRENCY", 7) %>
:timeout: 30
:queues:
  - critical
  - [default, 2]
  - report
production:
  :concurrency: 25
  :queues:
    - [report, 3]
`
	env := map[string]string{}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	fc, err := ParseFileConfig([]byte(yml), "development", lookup)
	if err != nil {
		t.Fatal(err)
	}
	if fc.Concurrency != 7 || fc.Timeout != 30*time.Second || len(fc.Queues) != 3 || fc.Queues[1] != (QueueWeight{"default", 2}) {
		t.Fatalf("%+v", fc)
	}
	env["SIDEKIQ_CONCURRENCY"] = "12"
	fc, err = ParseFileConfig([]byte(yml), "production", lookup)
	if err != nil {
		t.Fatal(err)
	}
	if fc.Concurrency != 25 || len(fc.Queues) != 1 || fc.Queues[0] != (QueueWeight{"report", 3}) {
		t.Fatalf("production: %+v", fc)
	}
	for _, bad := range []string{":concurrency: zero\n", ":queues: default\n", ":queues:\n  - [a, b]\n", "<%= system('x') %>\n", ":queues: [\n"} {
		if _, err := ParseFileConfig([]byte(bad), "", lookup); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseCLI(t *testing.T) {
	lookup := func(k string) (string, bool) { return "", false }
	var sb strings.Builder
	cli, err := ParseCLI([]string{"-q", "report-0123456789abcdef", "-q", "report,2", "-c", "10", "-t", "8", "--dialect", "7", "-g", "app"}, lookup, &sb)
	if err != nil {
		t.Fatal(err)
	}
	o := cli.Options
	if len(o.Queues) != 2 || o.Queues[1].Weight != 2 || o.Concurrency != 10 || o.Timeout != 8*time.Second || o.Dialect != Dialect7 || o.Tag != "app" {
		t.Fatalf("%+v", o)
	}
	for _, bad := range [][]string{{"-q", "a,x"}, {"-c", "0"}, {"--fetch", "foo"}, {"-x"}, {"-r", "app.rb"}, {"--dialect", "5"}, {"extra"}, {"-t", "-3"}} {
		if _, err := ParseCLI(bad, lookup, &sb); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestValidRedisURL(t *testing.T) {
	for _, ok := range []string{"redis://localhost:6379/0", "redis://:pw@h/3", "rediss://h:6380"} {
		if err := ValidRedisURL(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://h", "redis:///0", "redis://h/x", "localhost:6379"} {
		if err := ValidRedisURL(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestMetricBucketsMatchSidekiq(t *testing.T) {
	// 2026-11-26 23:03 UTC, as observed in sidekiq-observed.md §5.
	minute := time.Date(2026, 11, 26, 23, 3, 30, 0, time.UTC).Unix() / 60
	b7 := metricBuckets(Dialect7, minute)
	if len(b7) != 1 || b7[0].key != "j|20261126|23:3" || b7[0].ttl != 8*3600 {
		t.Fatalf("7.x: %+v", b7)
	}
	b8 := metricBuckets(Dialect8, minute)
	if len(b8) != 2 || b8[0].key != "j|261126|23:03" || b8[1].key != "j|261126|23:0" || b8[1].ttl != 72*3600 {
		t.Fatalf("8.x: %+v", b8)
	}
	if metricBuckets(Dialect6, minute) != nil {
		t.Fatal("6.4 has no metrics")
	}
}

// A URL that does not parse is named with its password masked: url.Parse's
// own error quotes the whole URL.
func TestValidRedisURLHidesPassword(t *testing.T) {
	err := ValidRedisURL("redis://u:s3cret%zz@h:6379/0")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("ValidRedisURL = %v: want an error without the password", err)
	}
}
