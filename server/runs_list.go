package server

import (
	"context"
	"errors"
	"math"
	"net/http"
	"path"
	"regexp"
	"slices"
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

// listStates are the ?state= values: every state a run is shown in.
var listStates = []string{statePending, stateSplitting, stateProcessing, stateCompleted, stateFailed, stateCancelled}

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
	if q := c.Query("state"); q != "" {
		if !slices.Contains(listStates, q) {
			s.fail(c, userErr(http.StatusBadRequest, "err_bad_request", "state: "+strings.Join(listStates, ", ")))
			return
		}
		v.State = q
	}
	ctx := c.Request.Context()
	var runs []runView
	var err error
	if v.State == "" && v.Page == 1 {
		// The first page also shows status rows without a report (runs
		// Rails started), as it always has.
		runs, err = s.recentRuns(ctx, v.Limit+1)
	} else {
		runs, err = s.pagedRuns(ctx, v.State, v.Page, v.Limit+1)
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

// pagedRuns lists reports with a token, newest first, optionally in one
// state (as makeView shows it), a page at a time, joined with their status
// rows. limit is the page's size plus one, to tell whether there are more.
func (s *Server) pagedRuns(ctx context.Context, state string, page, limit int) ([]runView, error) {
	skip := (page - 1) * (limit - 1)
	if state == "" {
		reps, err := s.d.DB.ReportsWithToken(ctx, nil, skip, limit)
		if err != nil {
			return nil, err
		}
		return s.reportViews(ctx, reps)
	}
	// The report's status narrows the reports in SQL; the state itself is
	// the view's (a cancel is recorded on the report as failed, splitting
	// and processing are both a processing report), so the views are
	// filtered here, reading at most filterScan reports.
	var out []runView
	matched := 0
	for offset := 0; offset < filterScan; offset += filterBatch {
		status := reportStatusOf[state]
		reps, err := s.d.DB.ReportsWithToken(ctx, &status, offset, filterBatch)
		if err != nil {
			return nil, err
		}
		views, err := s.reportViews(ctx, reps)
		if err != nil {
			return nil, err
		}
		for _, v := range views {
			if v.State != state {
				continue
			}
			if matched++; matched > skip {
				out = append(out, v)
				if len(out) == limit {
					return out, nil
				}
			}
		}
		if len(reps) < filterBatch {
			break
		}
	}
	return out, nil
}

// reportStatusOf is the client_reports.status of a run shown in a state.
var reportStatusOf = map[string]models.ReportStatus{
	statePending: models.ReportPending, stateSplitting: models.ReportProcessing, stateProcessing: models.ReportProcessing,
	stateCompleted: models.ReportCompleted, stateFailed: models.ReportFailed, stateCancelled: models.ReportFailed,
}

// A filtered page reads reports filterBatch at a time, at most filterScan.
const (
	filterBatch = 200
	filterScan  = 5000
)

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
