package sidekiq

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
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

// maxErrorMessage is how much of an error message Sidekiq keeps.
const maxErrorMessage = 10000

// retryOrKill records a failure on the job as Sidekiq does and schedules a
// retry or moves it to the dead set, acknowledging the fetched original in
// the same transaction. It returns what happened, for the log.
func (s *Server) retryOrKill(ctx context.Context, u *UnitOfWork, job *Job, jobErr error, now time.Time) string {
	policy := ParseRetry(job.Retry, s.opts.MaxRetries)
	ack := func(c redis.Conn) error {
		if id := s.ackIdentity(); id != "" {
			return rdb.Ack(c, id, u.Queue, u.Raw)
		}
		return nil
	}
	if errors.Is(jobErr, ErrDiscard) {
		s.settleErr(ctx, u, ack)
		return "discarded"
	}
	kill := errors.Is(jobErr, ErrKill) || errors.Is(jobErr, ErrBadArgs) || errors.Is(jobErr, ErrUnknownClass)
	if !policy.Enabled && !kill {
		s.settleErr(ctx, u, ack)
		s.died(ctx, job, jobErr)
		return "dropped (retry: false)"
	}
	j := job.Clone()
	if rq := job.StringField("retry_queue"); rq != "" {
		j.Queue = rq
	} else {
		j.Queue = u.Queue
	}
	recordFailure(j, jobErr, now, s.opts.Dialect)
	var count int
	_, _ = j.Field("retry_count", &count)

	if kill || count >= policy.Max {
		var dead bool = true
		_, _ = j.Field("dead", &dead)
		if !dead {
			s.settleErr(ctx, u, ack)
			s.died(ctx, j, jobErr)
			return "dropped (dead: false)"
		}
		data, err := j.Encode()
		if err != nil {
			data = u.Raw
		}
		s.settleErr(ctx, u, func(c redis.Conn) error {
			return rdb.KillAndAck(c, now, s.deadLimits(), data, s.ackIdentity(), u.Queue, u.Raw)
		})
		s.died(ctx, j, jobErr)
		return "dead"
	}
	at := now.Add(RetryDelay(count, s.opts.Dialect, rand.IntN))
	data, err := j.Encode()
	if err != nil {
		data = u.Raw
	}
	s.settleErr(ctx, u, func(c redis.Conn) error {
		return rdb.RetryAndAck(c, at, data, s.ackIdentity(), u.Queue, u.Raw)
	})
	return "retry at " + at.UTC().Format(time.RFC3339)
}

// recordFailure sets the fields Sidekiq's job_retry.rb adds on failure:
// error_message, error_class, failed_at and retry_count 0 the first time,
// retried_at and retry_count+1 after, and error_backtrace when the job
// asks for it.
func recordFailure(j *Job, jobErr error, now time.Time, d Dialect) {
	msg := strings.ToValidUTF8(jobErr.Error(), "\uFFFD")
	if len(msg) > maxErrorMessage {
		msg = msg[:maxErrorMessage]
		for !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
	}
	_ = j.SetField("error_message", msg)
	_ = j.SetField("error_class", errorClass(jobErr))
	var count int
	if ok, err := j.Field("retry_count", &count); ok && err == nil {
		j.SetTime("retried_at", now, d)
		_ = j.SetField("retry_count", count+1)
	} else {
		j.SetTime("failed_at", now, d)
		_ = j.SetField("retry_count", 0)
	}
	if lines := backtraceLines(j, jobErr); lines != nil {
		if enc, err := EncodeBacktrace(lines); err == nil {
			_ = j.SetField("error_backtrace", enc)
		}
	}
}

// backtraceLines returns the lines to store when the job's "backtrace"
// option is true or a line count, else nil.
func backtraceLines(j *Job, jobErr error) []string {
	raw, ok := j.Fields["backtrace"]
	if !ok {
		return nil
	}
	limit := -1
	switch s := strings.TrimSpace(string(raw)); s {
	case "true":
	case "false", "null", "0":
		return nil
	default:
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return nil
		}
		limit = n
	}
	var lines []string
	var p *PanicError
	if errors.As(jobErr, &p) {
		for _, l := range strings.Split(strings.TrimSpace(string(p.Stack)), "\n") {
			lines = append(lines, strings.TrimSpace(l))
		}
	} else {
		lines = []string{jobErr.Error()}
	}
	if limit >= 0 && len(lines) > limit {
		lines = lines[:limit]
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
