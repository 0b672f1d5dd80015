package sidekiq

import (
	"bytes"
	"cmp"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// RetryPolicy is a job's "retry" option decoded as Sidekiq's job_retry.rb
// reads it.
type RetryPolicy struct {
	Enabled bool // false: no retry and no dead set
	Max     int  // retries before the dead set
}

// ParseRetry decodes the raw "retry" value: true (or absent) uses
// defaultMax, false disables, a JSON integer sets the count; anything else
// (a float, a string) means the default, as in Ruby.
func ParseRetry(raw json.RawMessage, defaultMax int) RetryPolicy {
	s := strings.TrimSpace(string(raw))
	switch s {
	case "", "true", "null":
		return RetryPolicy{Enabled: true, Max: defaultMax}
	case "false":
		return RetryPolicy{}
	}
	if n, err := strconv.Atoi(s); err == nil {
		return RetryPolicy{Enabled: true, Max: max(n, 0)}
	}
	return RetryPolicy{Enabled: true, Max: defaultMax}
}

// RetryDelay is Sidekiq's backoff: count⁴ + 15 seconds plus jitter, with
// jitter rand(10)·(count+1) up to 7.x and rand(10·(count+1)) from 8.0.
func RetryDelay(count int, d Dialect, r func(n int) int) time.Duration {
	base := count*count*count*count + 15
	var jitter int
	if d >= Dialect8 {
		jitter = r(10 * (count + 1))
	} else {
		jitter = r(10) * (count + 1)
	}
	return time.Duration(base+jitter) * time.Second
}

// maxErrorMessage is how many characters of an error message Sidekiq keeps
// (job_retry.rb exception_message: message[0, 10_000]).
const maxErrorMessage = 10000

// Fate is what happens to a failed job.
type Fate int

// The fates, as job_retry.rb decides them.
const (
	FateRetry   Fate = iota // scheduled in the retry set
	FateDead                // added to the dead set; death handlers run
	FateDropped             // neither retried nor kept (retry or dead false); death handlers run
	FateDiscard             // dropped silently: Discard (sidekiq_retry_in returning :discard)
)

func (f Fate) String() string {
	switch f {
	case FateRetry:
		return "retry"
	case FateDead:
		return "dead"
	case FateDropped:
		return "dropped"
	case FateDiscard:
		return "discarded"
	}
	return "Fate(" + strconv.Itoa(int(f)) + ")"
}

// Failure is what decides a failed job's fate. Count is the retry_count
// after this failure was recorded (0 on the first failure).
type Failure struct {
	// Known: the class resolved to a handler, so the failure passed
	// through Ruby's local retrier, which merges a null "retry" with the
	// class default (true). An unknown class fails in the global retrier,
	// where an absent or null "retry" drops the job.
	Known      bool
	Retry      json.RawMessage // the job's raw "retry"
	DefaultMax int             // max_retries for retry: true
	Count      int
	// RetryFor is the job's "retry_for" in seconds when HasRetryFor; the
	// job is exhausted once FailedAt + RetryFor is before Now.
	HasRetryFor bool
	RetryFor    time.Duration
	FailedAt    time.Time
	Now         time.Time
	// RetryForOnly is 8.1's rule: a job with retry_for is exhausted by
	// time alone, its retry count ignored (job_retry.rb since 8.1.0,
	// #6878); up to 8.0 either ends it.
	RetryForOnly bool
	Kill         bool // Kill or ErrBadArgs: sidekiq_retry_in returning :kill
	Discard      bool // Discard: sidekiq_retry_in returning :discard
	DeadOff      bool // the job's "dead" is false
}

// Decide mirrors job_retry.rb (8.0.6) global/local and process_retry: a
// falsy retry drops the job (death handlers run); then an exhausted count
// or an expired retry_for goes to retries_exhausted (with RetryForOnly, as
// 8.1: an expired retry_for when the job has one, else the count); then
// :discard and :kill; else a retry. retries_exhausted keeps the job in the
// dead set unless "dead" is false.
func Decide(f Failure) Fate {
	retry, ok := effectiveRetry(f.Retry, f.Known)
	if !ok {
		return FateDropped
	}
	exhausted := func() Fate {
		if f.DeadOff {
			return FateDropped
		}
		return FateDead
	}
	countOut := f.Count >= ParseRetry(retry, f.DefaultMax).Max
	timeOut := f.HasRetryFor && f.FailedAt.Add(f.RetryFor).Before(f.Now)
	if f.RetryForOnly && f.HasRetryFor {
		countOut = false
	}
	if countOut || timeOut {
		return exhausted()
	}
	if f.Discard {
		return FateDiscard
	}
	if f.Kill {
		return exhausted()
	}
	return FateRetry
}

// effectiveRetry is the "retry" that process_retry sees, and false when it
// is falsy so the job never gets there: the local retrier (a known class)
// merges a null or absent "retry" with the class default, true; the global
// one (an unknown class) reads it as nil.
func effectiveRetry(raw json.RawMessage, known bool) (json.RawMessage, bool) {
	switch strings.TrimSpace(string(raw)) {
	case "", "null":
		if !known {
			return nil, false
		}
		return json.RawMessage("true"), true
	case "false":
		return nil, false
	}
	return raw, true
}

// failure is a failed job's fate as decided, with what settling it
// writes.
type failure struct {
	fate Fate
	job  *Job      // with the failure recorded; the original when dropped before process_retry
	data []byte    // the JSON for the retry or dead set
	at   time.Time // FateRetry: when it runs again
	note string    // for the log line
}

// judge records a failure on the job as Sidekiq does and decides its fate
// (Decide); it writes nothing.
func (s *Server) judge(u *UnitOfWork, job *Job, jobErr error, trace []string, now time.Time) failure {
	known := !errors.Is(jobErr, ErrUnknownClass)
	retry, retried := effectiveRetry(job.Retry, known)
	if !retried {
		// process_retry is never reached: nothing is recorded.
		return failure{fate: FateDropped, job: job,
			note: "dropped (retry: " + cmp.Or(strings.TrimSpace(string(job.Retry)), "absent") + ")"}
	}
	j := job.Clone()
	j.Retry = retry // the class default merged in, as the local retrier writes it
	if rq := job.StringField("retry_queue"); rq != "" {
		j.Queue = rq
	} else {
		j.Queue = u.Queue
	}
	f := Failure{
		Known:      known,
		Retry:      job.Retry,
		DefaultMax: s.opts.MaxRetries,
		Now:        now,
		Kill:       errors.Is(jobErr, ErrKill) || errors.Is(jobErr, ErrBadArgs),
		Discard:    errors.Is(jobErr, ErrDiscard),
		// 8.1 makes retry_for and retry exclusive.
		RetryForOnly: s.opts.Dialect == Dialect81,
	}
	if dead, ok := j.Fields["dead"]; ok && strings.TrimSpace(string(dead)) == "false" {
		f.DeadOff = true
	}
	recordFailure(j, jobErr, trace, now, s.opts.Dialect)
	_, _ = j.Field("retry_count", &f.Count)
	f.FailedAt, _ = j.Time("failed_at")
	f.RetryFor, f.HasRetryFor = retryFor(j)

	out := failure{fate: Decide(f), job: j}
	switch out.fate {
	case FateDiscard:
		out.note = "discarded"
		return out
	case FateDropped:
		out.note = "dropped (dead: false)"
		return out
	case FateDead:
		out.note = "dead"
	default:
		out.at = now.Add(RetryDelay(f.Count, s.opts.Dialect, rand.IntN))
		out.note = "retry at " + out.at.UTC().Format(time.RFC3339)
	}
	data, err := j.Encode()
	if err != nil {
		data = u.Raw
	}
	out.data = data
	return out
}

// settleFailure has the fetcher write a failed job's fate, acknowledging
// the fetched original in the same transaction, then runs the death
// handlers for a job that died or was dropped (not for a discard).
func (s *Server) settleFailure(ctx context.Context, u *UnitOfWork, f failure, jobErr error, now time.Time) {
	switch f.fate {
	case FateRetry:
		s.fetcher.retry(ctx, u, f.at, f.data)
	case FateDead:
		s.fetcher.kill(ctx, u, now, f.data)
	default:
		s.fetcher.drop(ctx, u)
	}
	if f.fate == FateDead || f.fate == FateDropped {
		s.died(ctx, f.job, jobErr)
	}
}

// retryFor reads "retry_for" (seconds; the client writes an integer) as
// Ruby does: any number counts, anything else is absent.
func retryFor(j *Job) (time.Duration, bool) {
	raw, ok := j.Fields["retry_for"]
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(string(raw)), 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}

// recordFailure sets the fields Sidekiq's job_retry.rb adds on failure:
// error_message, error_class, failed_at and retry_count 0 the first time,
// retried_at and retry_count+1 after, and error_backtrace when the job
// asks for it.
func recordFailure(j *Job, jobErr error, trace []string, now time.Time, d Dialect) {
	_ = j.SetField("error_message", errorMessage(jobErr))
	_ = j.SetField("error_class", errorClass(jobErr))
	var count int
	if ok, err := j.Field("retry_count", &count); ok && err == nil {
		j.SetTime("retried_at", now, d)
		_ = j.SetField("retry_count", count+1)
	} else {
		j.SetTime("failed_at", now, d)
		_ = j.SetField("retry_count", 0)
	}
	if lines := backtraceLines(j, jobErr, trace); lines != nil {
		if enc, err := EncodeBacktrace(lines); err == nil {
			_ = j.SetField("error_backtrace", enc)
		}
	}
}

// errorMessage is the error's text cut to its first 10,000 characters,
// invalid UTF-8 replaced (Ruby's message[0, 10_000] then scrub!).
func errorMessage(err error) string {
	msg := strings.ToValidUTF8(err.Error(), "\uFFFD")
	if len(msg) <= maxErrorMessage {
		return msg // fewer bytes than the limit: fewer characters too
	}
	n := 0
	for i := range msg {
		if n == maxErrorMessage {
			return msg[:i]
		}
		n++
	}
	return msg
}

// backtraceLines returns the lines to store when the job's "backtrace"
// option is true or a line count, else nil. Ruby stores the exception's
// backtrace; Go has the handler's location, then the frames of the call
// that ran it (see failureStack), or an error's own Backtrace().
func backtraceLines(j *Job, jobErr error, trace []string) []string {
	raw, ok := j.Fields["backtrace"]
	if !ok {
		return nil
	}
	limit := -1
	switch s := strings.TrimSpace(string(raw)); s {
	case "true":
	case "false", "null":
		return nil
	default:
		n, err := strconv.Atoi(s)
		if err != nil {
			// Ruby: any other truthy value, .to_i (a string "3" is 3, "x" 0).
			var str string
			if json.Unmarshal(raw, &str) == nil {
				n, _ = strconv.Atoi(strings.TrimSpace(str))
			}
		}
		limit = max(n, 0)
	}
	lines := errorBacktrace(jobErr, trace)
	if limit >= 0 && len(lines) > limit {
		lines = lines[:limit]
	}
	if lines == nil {
		lines = []string{}
	}
	return lines
}

// EncodeBacktrace encodes lines as Sidekiq's error_backtrace:
// strict base64 of zlib-deflated JSON (Sidekiq 7.2.1+).
func EncodeBacktrace(lines []string) (string, error) {
	js, err := encodeJSON(lines)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	if _, err := zw.Write(js); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// DecodeBacktrace reads error_backtrace in every form Sidekiq wrote it:
// base64 with or without newlines, or a raw JSON array (6.x).
func DecodeBacktrace(raw json.RawMessage) ([]string, error) {
	var lines []string
	if json.Unmarshal(raw, &lines) == nil {
		return lines, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\n", "", "\r", "").Replace(s))
	if err != nil {
		return nil, err
	}
	zr, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	if err := json.NewDecoder(zr).Decode(&lines); err != nil {
		return nil, err
	}
	return lines, nil
}

// died runs the death handlers; a panicking handler is logged, not fatal.
func (s *Server) died(ctx context.Context, job *Job, err error) {
	for _, h := range s.opts.DeathHandlers {
		func() {
			defer func() {
				if v := recover(); v != nil {
					s.log.Error("death handler panicked", "jid", job.JID, "panic", v)
				}
			}()
			h(ctx, job, err)
		}()
	}
}
