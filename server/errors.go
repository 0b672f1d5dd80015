package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/storage"
)

// httpError is an error the user may see: a status and a message key (see
// i18n.go), plus detail shown after the translated message.
type httpError struct {
	status int
	key    string
	detail string
	err    error
	extra  gin.H // more fields for a JSON answer (e.g. the run's state)
}

func (e *httpError) Error() string {
	msg := fmt.Sprintf("%d %s", e.status, e.key)
	if e.detail != "" {
		msg += ": " + e.detail
	}
	if e.err != nil {
		msg += ": " + e.err.Error()
	}
	return msg
}

func (e *httpError) Unwrap() error { return e.err }

// userErr makes an httpError; detail is optional text after the message.
func userErr(status int, key, detail string) error {
	return &httpError{status: status, key: key, detail: detail}
}

var (
	errNotFound = userErr(http.StatusNotFound, "err_not_found", "")
	errMethod   = userErr(http.StatusMethodNotAllowed, "err_method", "")
)

// describe maps any error to a status and the message key shown to the
// user. It is the one place that decides statuses.
func describe(err error) (status int, key, detail string) {
	var he *httpError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		return he.status, he.key, he.detail
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, "err_too_large", fmt.Sprintf("%d bytes", mbe.Limit)
	case errors.Is(err, router.ErrBadToken):
		return http.StatusBadRequest, "err_bad_token", ""
	case errors.Is(err, models.ErrNotFound), errors.Is(err, storage.ErrNotExist):
		return http.StatusNotFound, "err_not_found", ""
	case errors.Is(err, sidekiq.ErrNotFound):
		return http.StatusNotFound, "err_job_gone", ""
	case errors.Is(err, context.Canceled):
		return 499, "err_canceled", "" // the client went away; nobody reads this
	}
	return http.StatusInternalServerError, "err_internal", ""
}

// fail answers the request with err as JSON or HTML, by Accept, and logs
// internal errors (their detail stays in the log).
func (s *Server) fail(c *gin.Context, err error) {
	status, key, detail := describe(err)
	if status >= 500 {
		s.log.Error("http request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
	}
	l := lang(c)
	msg := l.T(key)
	if detail != "" {
		msg += " (" + detail + ")"
	}
	if c.Writer.Written() {
		c.Abort() // a stream already started: nothing more can be said
		return
	}
	if status == http.StatusUnauthorized {
		s.challenge(c)
	}
	if wantsJSON(c) {
		body := gin.H{"error": msg, "status": status}
		var he *httpError
		if errors.As(err, &he) {
			for k, v := range he.extra {
				body[k] = v
			}
		}
		c.AbortWithStatusJSON(status, body)
		return
	}
	c.Abort()
	s.render(c, status, "error.html", pageData{Lang: l, Title: l.T("error_title"), Data: errorView{Status: status, Message: msg}})
}

type errorView struct {
	Status  int
	Message string
}
