package sidekiq

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestDecide is job_retry.rb (8.0.6) as a table: global (unknown class)
// and local (known class) retriers, process_retry's exhausted count and
// retry_for, sidekiq_retry_in's :discard and :kill, and "dead": false.
func TestDecide(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, c := range []struct {
		name string
		f    Failure
		want Fate
	}{
		{"known, retry absent: class default true", Failure{Known: true, Count: 0}, FateRetry},
		{"known, retry null: class default true", Failure{Known: true, Retry: raw("null")}, FateRetry},
		{"unknown, retry absent: global drops", Failure{}, FateDropped},
		{"unknown, retry null: global drops", Failure{Retry: raw("null")}, FateDropped},
		{"unknown, retry true: retried", Failure{Retry: raw("true")}, FateRetry},
		{"unknown, retry 0: dead", Failure{Retry: raw("0")}, FateDead},
		{"retry false", Failure{Known: true, Retry: raw("false")}, FateDropped},
		{"retry false beats kill", Failure{Known: true, Retry: raw("false"), Kill: true}, FateDropped},
		{"count below default", Failure{Known: true, Retry: raw("true"), Count: 24}, FateRetry},
		{"count at default", Failure{Known: true, Retry: raw("true"), Count: 25}, FateDead},
		{"count at retry 3", Failure{Known: true, Retry: raw("3"), Count: 3}, FateDead},
		{"float retry means the default", Failure{Known: true, Retry: raw("3.0"), Count: 3}, FateRetry},
		{"exhausted, dead false", Failure{Known: true, Retry: raw("1"), Count: 1, DeadOff: true}, FateDropped},
		{"retry_for expired", Failure{Known: true, HasRetryFor: true, RetryFor: time.Minute, FailedAt: now.Add(-2 * time.Minute), Count: 1}, FateDead},
		{"retry_for running", Failure{Known: true, HasRetryFor: true, RetryFor: time.Hour, FailedAt: now.Add(-2 * time.Minute), Count: 1}, FateRetry},
		{"retry_for expired, dead false", Failure{Known: true, HasRetryFor: true, FailedAt: now.Add(-time.Second), DeadOff: true}, FateDropped},
		{"discard", Failure{Known: true, Discard: true}, FateDiscard},
		{"discard after exhaustion goes dead", Failure{Known: true, Retry: raw("0"), Discard: true}, FateDead},
		{"kill", Failure{Known: true, Kill: true}, FateDead},
		{"kill, dead false", Failure{Known: true, Kill: true, DeadOff: true}, FateDropped},
		// 8.0: retry_for and retry both end a job.
		{"8.0: count over retry, retry_for running", Failure{Known: true, Retry: raw("2"), Count: 5, HasRetryFor: true, RetryFor: time.Hour, FailedAt: now.Add(-time.Minute)}, FateDead},
		// 8.1 (#6878): with retry_for the count is ignored; without, it rules.
		{"8.1: count over retry, retry_for running", Failure{RetryForOnly: true, Known: true, Retry: raw("2"), Count: 5, HasRetryFor: true, RetryFor: time.Hour, FailedAt: now.Add(-time.Minute)}, FateRetry},
		{"8.1: count over default, retry_for running", Failure{RetryForOnly: true, Known: true, Count: 30, HasRetryFor: true, RetryFor: time.Hour, FailedAt: now.Add(-time.Minute)}, FateRetry},
		{"8.1: retry_for expired, count low", Failure{RetryForOnly: true, Known: true, Retry: raw("25"), Count: 1, HasRetryFor: true, RetryFor: time.Minute, FailedAt: now.Add(-2 * time.Minute)}, FateDead},
		{"8.1: no retry_for, count at retry", Failure{RetryForOnly: true, Known: true, Retry: raw("3"), Count: 3}, FateDead},
		{"8.1: retry false still drops", Failure{RetryForOnly: true, Known: true, Retry: raw("false"), HasRetryFor: true, RetryFor: time.Hour, FailedAt: now}, FateDropped},
		{"8.1: kill still kills", Failure{RetryForOnly: true, Known: true, Kill: true, HasRetryFor: true, RetryFor: time.Hour, FailedAt: now}, FateDead},
	} {
		c.f.DefaultMax = 25
		c.f.Now = now
		if got := Decide(c.f); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

// Ruby keeps message[0, 10_000]: characters, not bytes.
func TestErrorMessageCutAtCharacters(t *testing.T) {
	long := strings.Repeat("é", 12000)
	got := errorMessage(errors.New(long))
	if n := len([]rune(got)); n != 10000 {
		t.Fatalf("kept %d characters, want 10000", n)
	}
	if got := errorMessage(errors.New("short")); got != "short" {
		t.Fatal(got)
	}
	if got := errorMessage(errors.New("a\xffb")); got != "a\uFFFDb" {
		t.Fatalf("%q", got)
	}
}

// backtrace: N keeps N lines of the failure's trace; true keeps them all;
// 0 keeps an empty list, as Ruby's backtrace[0...0].
func TestBacktraceLines(t *testing.T) {
	trace := []string{"a.go:1:in `h'", "b.go:2:in `m'", "c.go:3:in `p'", "d.go:4:in `q'"}
	for opt, want := range map[string]int{"true": 4, "2": 2, "10": 4, "0": 0, `"3"`: 3} {
		j := &Job{Fields: map[string]json.RawMessage{"backtrace": raw(opt)}}
		got := backtraceLines(j, errors.New("x"), trace)
		if got == nil || len(got) != want {
			t.Errorf("backtrace %s: %d lines %v, want %d", opt, len(got), got, want)
		}
	}
	for _, opt := range []string{"false", "null"} {
		j := &Job{Fields: map[string]json.RawMessage{"backtrace": raw(opt)}}
		if got := backtraceLines(j, errors.New("x"), trace); got != nil {
			t.Errorf("backtrace %s: %v", opt, got)
		}
	}
}

func TestHistogramBucketsAndKeys(t *testing.T) {
	for ms, want := range map[int64]int{0: 0, 19: 0, 20: 1, 280: 7, 334999: 24, 335000: 25, 1 << 40: 25} {
		if got := histogramBucket(ms); got != want {
			t.Errorf("bucket(%d) = %d, want %d", ms, got, want)
		}
	}
	minute := time.Date(2025, 2, 4, 8, 3, 0, 0, time.UTC).Unix() / 60
	if got := histogramKey(Dialect8, "HardJob", minute); got != "h|HardJob-4-8:3" {
		t.Errorf("8: %s", got)
	}
	if got := histogramKey(Dialect7, "HardJob", minute); got != "HardJob-04-08:3" {
		t.Errorf("7: %s", got)
	}
}

func TestDefaultVersionMatchesTheDialect(t *testing.T) {
	for d, want := range map[Dialect]string{Dialect81: "8.1.7", Dialect8: "8.0.6", Dialect7: "7.3.2", Dialect6: "6.4.1"} {
		o := Options{Dialect: d}
		if err := o.withDefaults(); err != nil {
			t.Fatal(err)
		}
		if o.Version != want || len(o.Labels) != 1 || o.Labels[0] != "pallarel" {
			t.Errorf("dialect %d: version %q labels %v", d, o.Version, o.Labels)
		}
	}
}

func TestParseDialect(t *testing.T) {
	for in, want := range map[string]Dialect{"": Dialect8, "8": Dialect8, "8.0": Dialect8, "8.0.6": Dialect8,
		"8.1": Dialect81, "8.1.7": Dialect81, "81": Dialect81, "7": Dialect7, "7.3.2": Dialect7, "6.4": Dialect6} {
		if got, err := ParseDialect(in); err != nil || got != want {
			t.Errorf("ParseDialect(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"9", "5", "8x"} {
		if _, err := ParseDialect(in); err == nil {
			t.Errorf("ParseDialect(%q) accepted", in)
		}
	}
	if Dialect81.String() != "8.1" || Dialect8.String() != "8" {
		t.Errorf("String: %s %s", Dialect81, Dialect8)
	}
}
