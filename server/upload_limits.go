package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/render"
)

// minRate wraps an upload body so that each UploadRateWindow must bring
// MinUploadRate × window bytes: the connection's read deadline moves
// forward only while the client keeps that pace. A trickle is cut off
// with 408 instead of holding a connection for the whole ReadTimeout.
func (s *Server) minRate(c *gin.Context, body io.ReadCloser) io.ReadCloser {
	if s.d.MinUploadRate < 0 {
		return body
	}
	rc := http.NewResponseController(c.Writer)
	r := &rateReader{ReadCloser: body, rc: rc, window: s.d.UploadRateWindow,
		need: s.d.MinUploadRate * int64(s.d.UploadRateWindow/time.Second), start: time.Now(), max: s.d.ReadTimeout}
	if r.need <= 0 {
		r.need = s.d.MinUploadRate
	}
	if err := r.extend(); err != nil {
		return body // a writer without deadlines (tests' recorders): no check
	}
	return r
}

type rateReader struct {
	io.ReadCloser
	rc     *http.ResponseController
	window time.Duration
	need   int64 // bytes each window must bring
	got    int64 // bytes in the current window
	start  time.Time
	max    time.Duration // the whole request's ReadTimeout
	// timedOut is set once the deadline cut the body.
	timedOut bool
}

// extend moves the read deadline one window ahead, never past ReadTimeout.
func (r *rateReader) extend() error {
	dl := time.Now().Add(r.window)
	if end := r.start.Add(r.max); r.max > 0 && dl.After(end) {
		dl = end
	}
	return r.rc.SetReadDeadline(dl)
}

func (r *rateReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.got += int64(n)
	if r.got >= r.need {
		r.got = 0
		_ = r.extend()
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		r.timedOut = true
		return n, userErr(http.StatusRequestTimeout, "err_too_slow", "")
	}
	return n, err
}

// Idempotency-Key: a client that retries an upload (a double click, a
// timeout) with the same key gets the run the first request made, not a
// second run. Keys live a day in Redis.
const idempotencyTTL = 24 * time.Hour

const idemPending = "pending"

// idemKey is the Redis key of a client's Idempotency-Key.
func idemKey(key string) string { return contract.IdempotencyKey(hashKey(key)) }

// claimIdempotency claims key for this request. It returns the Redis key
// to finish or release, or the token of the run an earlier request with the
// same key made (replay). An empty key claims nothing.
func (s *Server) claimIdempotency(ctx context.Context, key string) (claimed, replay string, err error) {
	if key == "" {
		return "", "", nil
	}
	if len(key) > 255 {
		return "", "", userErr(http.StatusBadRequest, "err_bad_request", "Idempotency-Key longer than 255 bytes")
	}
	rk := idemKey(key)
	conn, err := s.d.Pool.GetContext(ctx)
	if err != nil {
		return "", "", &httpError{status: http.StatusServiceUnavailable, key: "err_unavailable", err: err}
	}
	defer conn.Close()
	ok, err := redis.String(conn.Do("SET", rk, idemPending, "NX", "EX", int(idempotencyTTL.Seconds())))
	if err == nil && ok == "OK" {
		return rk, "", nil
	}
	if err != nil && !errors.Is(err, redis.ErrNil) {
		return "", "", &httpError{status: http.StatusServiceUnavailable, key: "err_unavailable", err: err}
	}
	v, err := redis.String(conn.Do("GET", rk))
	switch {
	case errors.Is(err, redis.ErrNil):
		return s.claimIdempotency(ctx, key) // released meanwhile
	case err != nil:
		return "", "", &httpError{status: http.StatusServiceUnavailable, key: "err_unavailable", err: err}
	case v == idemPending:
		return "", "", userErr(http.StatusConflict, "err_idempotency_busy", "")
	}
	return "", v, nil
}

// finishIdempotency records the run a claimed key made.
func (s *Server) finishIdempotency(ctx context.Context, rk, token string) {
	if rk == "" {
		return
	}
	s.idemDo(ctx, "SET", rk, token, "XX", "EX", int(idempotencyTTL.Seconds()))
}

// releaseIdempotency frees a key whose request failed, so a retry runs.
func (s *Server) releaseIdempotency(ctx context.Context, rk string) {
	if rk == "" {
		return
	}
	s.idemDo(ctx, "DEL", rk)
}

func (s *Server) idemDo(ctx context.Context, cmd string, args ...any) {
	conn, err := s.d.Pool.GetContext(context.WithoutCancel(ctx))
	if err == nil {
		defer conn.Close()
		_, err = conn.Do(cmd, args...)
	}
	if err != nil {
		s.log.Warn("idempotency key", "cmd", cmd, "err", err)
	}
}

// hashKey keeps client-chosen strings out of Redis key names.
func hashKey(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// MaxTemplateBytes caps an uploaded XLSX template by default (a real one is
// a few hundred KiB); Deps.TemplateLimits (TEMPLATE_MAX_BYTES) changes it,
// and storeTemplate checks the rest of the template's limits.
const MaxTemplateBytes int64 = render.DefaultTemplateMaxBytes
