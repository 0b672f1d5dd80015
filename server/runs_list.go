package server

import (
	"context"
	"errors"
	"math"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/storage"
)

// listView is the runs list page: rows, the filter and the pager.
type runsListView struct {
	Runs   []runView `json:"runs"`
	State  string    `json:"state,omitempty"`
	Page   int       `json:"page"`
	Limit  int       `json:"limit"`
	More   bool      `json:"more"`
	States []string  `json:"-"`
}

// listStates are the ?state= values, as client_reports.status names them.
var listStates = []string{statePending, stateProcessing, stateCompleted, stateFailed}

// statusList is GET /csv_processing/status: the newest runs with their
// file name, type, state and duration; ?state= filters, ?page= and
// ?limit= (1..100, default 10) page.
func (s *Server) statusList(c *gin.Context) {
	v := runsListView{Page: 1, Limit: 10, States: listStates}
	if q := c.Query("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > 100 {
			s.fail(c, userErr(http.StatusBadRequest, "err_bad_limit", q))
			return
		}
		v.Limit = n
	}
	if q := c.Query("page"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > 1_000_000 {
			s.fail(c, userErr(http.StatusBadRequest, "err_bad_request", "page"))
			return
		}
		v.Page = n
	}
	var status *models.ReportStatus
	if q := c.Query("state"); q != "" {
		st, err := models.ParseReportStatus(q)
		if err != nil {
			s.fail(c, userErr(http.StatusBadRequest, "err_bad_request", "state: pending, processing, completed or failed"))
			return
		}
		v.State, status = q, &st
	}
	ctx := c.Request.Context()
	var runs []runView
	var err error
	if status == nil && v.Page == 1 {
		// The first page also shows status rows without a report (runs
		// Rails started), as it always has.
		runs, err = s.recentRuns(ctx, v.Limit+1)
	} else {
		runs, err = s.pagedRuns(ctx, status, v.Page, v.Limit+1)
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	if len(runs) > v.Limit {
		v.More, runs = true, runs[:v.Limit]
	}
	for i := range runs {
		// The list shows how long a running run has taken so far too.
		if runs[i].DurationSeconds == nil {
			runs[i].DurationSeconds = s.duration(runs[i])
		}
	}
	v.Runs = runs
	if wantsJSON(c) {
		c.JSON(http.StatusOK, v)
		return
	}
	l := lang(c)
	s.render(c, http.StatusOK, "status_list.html", pageData{Lang: l, Title: l.T("status_list"), Data: v})
}

// pagedRuns lists reports with a token, newest first, optionally of one
// status, a page at a time, joined with their status rows.
func (s *Server) pagedRuns(ctx context.Context, status *models.ReportStatus, page, limit int) ([]runView, error) {
	reps, err := s.d.DB.ReportsWithToken(ctx, status, (page-1)*(limit-1), limit)
	if err != nil {
		return nil, err
	}
	return s.reportViews(ctx, reps)
}

// duration is a run's time from creation to its end (finalized), or to now
// while it runs; nil when unknown.
func (s *Server) duration(v runView) *float64 {
	if v.CreatedAt.IsZero() {
		return nil
	}
	end := s.d.Now()
	if v.FinalizedAt != nil {
		end = *v.FinalizedAt
	} else if v.Finished() {
		end = v.UpdatedAt
	}
	d := math.Round(end.Sub(v.CreatedAt).Seconds())
	if d < 0 {
		return nil
	}
	return &d
}

// whyNoDownload explains a missing result: 410 when retention removed it,
// 409 with the state while the run has not completed, else the error.
func (s *Server) whyNoDownload(ctx context.Context, token string, statErr error) error {
	if !errors.Is(statErr, storage.ErrNotExist) {
		return statErr
	}
	v, err := s.loadRun(ctx, token)
	if err != nil {
		return err // 404 for an unknown token
	}
	if v.Expired {
		return &httpError{status: http.StatusGone, key: "err_expired", extra: gin.H{"state": v.State, "expired": true}}
	}
	if v.State != stateCompleted {
		return &httpError{status: http.StatusConflict, key: "err_not_ready", detail: v.State, extra: gin.H{"state": v.State}}
	}
	return statErr
}

// internalPath matches absolute file paths (and Go source positions) in an
// error text: the runs' pages show errors to users, not the server layout.
var internalPath = regexp.MustCompile(`(?:/[\w.@+\-]+){2,}/?(?::\d+)?`)

// cleanError keeps what a user can act on from a stored error: absolute
// paths become their last element.
// A match right after ':' or '/' (a URL) or a word character (a relative
// key) is left alone.
func cleanError(msg string) string {
	var out strings.Builder
	last := 0
	for _, m := range internalPath.FindAllStringIndex(msg, -1) {
		if m[0] > 0 {
			if c := msg[m[0]-1]; c == ':' || c == '/' || c == '_' || c == '-' || c == '.' ||
				(c >= '0' && c <= '9') || (c|0x20 >= 'a' && c|0x20 <= 'z') {
				continue
			}
		}
		out.WriteString(msg[last:m[0]])
		out.WriteString(path.Base(msg[m[0]:m[1]]))
		last = m[1]
	}
	out.WriteString(msg[last:])
	return out.String()
}
