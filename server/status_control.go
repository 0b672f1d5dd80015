package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/router"
)

// RunControl is what the run pages' Cancel and Retry buttons, their API and
// the failed-row list use; the run package's pipeline implements it
// (internal/app hands it over).
type RunControl interface {
	Cancel(ctx context.Context, token string) error
	RetryFailed(ctx context.Context, token string) (int, error)
	FailedRows(ctx context.Context, token string, offset, limit int) (contract.FailedPage, error)
}

// failedPerPage is how many failed rows one page lists.
const failedPerPage = 50

func (s *Server) runControlRoutes(g *gin.RouterGroup) {
	g.GET("/csv_processing/:token/failed", s.failedRows)
	g.POST("/csv_processing/:token/cancel", s.cancelRun)
	g.POST("/csv_processing/:token/retry", s.retryRun)
}

// runFormToken is the hidden field of a run page's forms: an HMAC of the
// action and the token with the CSRF key, which another site cannot know.
func (s *Server) runFormToken(action, token string) string {
	m := hmac.New(sha256.New, s.d.CSRFKey)
	m.Write([]byte("run-control|" + action + "|" + token))
	return hex.EncodeToString(m.Sum(nil))
}

// checkRunPost lets a run-control POST through when it is an API call (a
// JSON body, which a cross-site form cannot send without a CORS preflight
// we never allow) or a form of the run's page (the hidden token matches
// and, when the browser names the origin, it is ours).
func (s *Server) checkRunPost(c *gin.Context, action, token string) error {
	ct := c.ContentType()
	if ct == "application/json" {
		return nil
	}
	if o := c.GetHeader("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || !s.sameSite(u, c.Request) {
			return userErr(http.StatusForbidden, "err_csrf", "")
		}
	}
	got := c.PostForm(csrfField)
	if got == "" || !hmac.Equal([]byte(got), []byte(s.runFormToken(action, token))) {
		return userErr(http.StatusForbidden, "err_csrf", "")
	}
	return nil
}

// runControlErr maps the pipeline's refusals to what the user reads.
func runControlErr(err error) error {
	switch {
	case errors.Is(err, contract.ErrRunEnded):
		return &httpError{status: http.StatusConflict, key: "err_run_ended", err: err}
	case errors.Is(err, contract.ErrRetryBusy):
		return &httpError{status: http.StatusConflict, key: "err_retry_busy", err: err}
	case errors.Is(err, contract.ErrNothingToRetry):
		return &httpError{status: http.StatusConflict, key: "err_nothing_to_retry", err: err, extra: gin.H{"code": "nothing_to_retry"}}
	case errors.Is(err, contract.ErrNotRetryable):
		return &httpError{status: http.StatusConflict, key: "err_not_retryable", err: err}
	}
	return err
}

// runAction runs one control action for POST /csv_processing/:token/<action>.
func (s *Server) runAction(c *gin.Context, action string, do func(ctx context.Context, token string) (gin.H, error)) {
	token := c.Param("token")
	if err := router.ValidToken(token); err != nil {
		s.fail(c, err)
		return
	}
	if s.d.Runs == nil {
		s.fail(c, userErr(http.StatusServiceUnavailable, "err_unavailable", ""))
		return
	}
	if err := s.checkRunPost(c, action, token); err != nil {
		s.fail(c, err)
		return
	}
	res, err := do(c.Request.Context(), token)
	if err != nil {
		s.fail(c, runControlErr(err))
		return
	}
	if wantsJSON(c) || c.ContentType() == "application/json" {
		res["token"] = token
		c.JSON(http.StatusOK, res)
		return
	}
	c.Redirect(http.StatusSeeOther, "/csv_processing/"+token)
}

// cancelRun is POST /csv_processing/:token/cancel: 200 {"state":"cancelled"},
// 409 when the run has already ended, 404 when nothing knows the token.
func (s *Server) cancelRun(c *gin.Context) {
	s.runAction(c, "cancel", func(ctx context.Context, token string) (gin.H, error) {
		if err := s.d.Runs.Cancel(ctx, token); err != nil {
			return nil, err
		}
		s.log.Info("run cancelled by user", "token", token)
		return gin.H{"state": stateCancelled}, nil
	})
}

// retryRun is POST /csv_processing/:token/retry: 200 {"rows": n} with the
// number of failed rows pushed again, 409 unless the run completed with
// failed rows.
func (s *Server) retryRun(c *gin.Context) {
	s.runAction(c, "retry", func(ctx context.Context, token string) (gin.H, error) {
		n, err := s.d.Runs.RetryFailed(ctx, token)
		if err != nil {
			return nil, err
		}
		s.log.Info("failed rows retried by user", "token", token, "rows", n)
		return gin.H{"state": stateProcessing, "rows": n}, nil
	})
}

// failedView is a page of failed rows as the JSON API and the page show it.
type failedView struct {
	contract.FailedPage
	Page  int `json:"page"`
	Pages int `json:"pages"`
}

// loadFailed reads page (1-based) of token's failed rows.
func (s *Server) loadFailed(ctx context.Context, token string, page int) (failedView, error) {
	fp, err := s.d.Runs.FailedRows(ctx, token, (page-1)*failedPerPage, failedPerPage)
	if err != nil {
		return failedView{}, err
	}
	return failedView{FailedPage: fp, Page: page, Pages: max((fp.Total+failedPerPage-1)/failedPerPage, 1)}, nil
}

// failedPageParam reads ?page=, 1 when absent.
func failedPageParam(c *gin.Context) (int, error) {
	q := c.Query("page")
	if q == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(q)
	if err != nil || n < 1 || n > 1_000_000 {
		return 0, userErr(http.StatusBadRequest, "err_bad_page", q)
	}
	return n, nil
}

// failedRows is GET /csv_processing/:token/failed?page=N: JSON
// {"rows":[{"row","error"}],"total","page","pages","source"}; an HTML
// request gets the run's page at that page of failed rows.
func (s *Server) failedRows(c *gin.Context) {
	token := c.Param("token")
	if err := router.ValidToken(token); err != nil {
		s.fail(c, err)
		return
	}
	page, err := failedPageParam(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if !wantsJSON(c) {
		c.Redirect(http.StatusSeeOther, "/csv_processing/"+token+"?page="+strconv.Itoa(page)+"#failed")
		return
	}
	if s.d.Runs == nil {
		s.fail(c, userErr(http.StatusServiceUnavailable, "err_unavailable", ""))
		return
	}
	if _, err := s.loadRun(c.Request.Context(), token); err != nil {
		s.fail(c, err)
		return
	}
	fv, err := s.loadFailed(c.Request.Context(), token, page)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, fv)
}

// statusPage is what status.html gets: the run, its failed rows (one page)
// and the run-control form tokens.
type statusPage struct {
	runView
	Failed      failedView
	CancelToken string
	RetryToken  string
}

// TotalText is the total, or "~estimate" while the split is still counting.
func (p statusPage) TotalText() string {
	if p.EstimatedTotal != nil {
		return "~" + strconv.Itoa(*p.EstimatedTotal)
	}
	return strconv.Itoa(p.TotalCount)
}

// ETAText is the ETA as "1h 2m 3s", or "stalled" for a stalled run.
func (p statusPage) ETAText(l locale) string {
	if p.Stalled {
		return l.T("stalled")
	}
	if p.ETASeconds == nil {
		if !p.Finished() {
			return l.T("estimating") // until the recent rate is known
		}
		return ""
	}
	return humanDuration(*p.ETASeconds)
}

// DurationText is how long an ended run took, as "1h 2m 3s".
func (p statusPage) DurationText() string {
	if p.DurationSeconds == nil {
		return ""
	}
	return humanDuration(*p.DurationSeconds)
}

func humanDuration(sec float64) string {
	if sec < 10 {
		return strconv.FormatFloat(math.Round(sec*10)/10, 'f', 1, 64) + "s" // a tenth, even when whole: "4.0s"
	}
	n := int(sec + 0.5)
	h, m, s := n/3600, n%3600/60, n%60
	var b strings.Builder
	if h > 0 {
		b.WriteString(strconv.Itoa(h) + "h ")
	}
	if h > 0 || m > 0 {
		b.WriteString(strconv.Itoa(m) + "m ")
	}
	b.WriteString(strconv.Itoa(s) + "s")
	return b.String()
}
