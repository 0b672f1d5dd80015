package server

import (
	"cmp"
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/router"
)

// The states a run is shown in: pending (uploaded, not split yet), then
// the run's own states (models.RunSplitting ... models.RunCancelled).
const (
	statePending    = "pending"
	stateSplitting  = models.RunSplitting
	stateProcessing = models.RunProcessing
	stateCompleted  = models.RunCompleted
	stateFailed     = models.RunFailed
	stateCancelled  = models.RunCancelled
)

// runView is one run as the status pages, the events stream and the JSON
// API show it: the Rails columns of csv_processing_statuses, plus state,
// failed_count, report_id and the derived progress figures.
type runView struct {
	Token       string `json:"token"`
	State       string `json:"state"`
	StateReason string `json:"state_reason"` // why it failed, was cancelled, or is stalled
	Stalled     bool   `json:"stalled"`      // still running, but stalled: see state_reason
	// Waiting: the run waits its turn for a worker (the caps on token
	// workers); state_reason says how many runs are ahead.
	Waiting    bool `json:"waiting"`
	TotalCount int  `json:"total_count"`
	// EstimatedTotal is the total estimated from the bytes the split has
	// read, while it splits; null otherwise.
	EstimatedTotal *int    `json:"estimated_total"`
	DoneCount      int     `json:"done_count"`
	FailedCount    int     `json:"failed_count"`
	Percentage     float64 `json:"percentage"`
	// Rate is rows per second over the last half minute or so (the first
	// seconds of a run: since it started); 0 when unknown.
	Rate            float64    `json:"rate"`
	ETASeconds      *float64   `json:"eta_seconds"`      // null when unknown, stalled or ended
	DurationSeconds *float64   `json:"duration_seconds"` // upload to end, once ended
	QueueName       string     `json:"queue_name"`
	WorkerTaskArn   string     `json:"worker_task_arn"`
	WorkerStartedAt *time.Time `json:"worker_started_at"`
	FinalizedAt     *time.Time `json:"finalized_at"`
	EndedAt         *time.Time `json:"ended_at"`
	ForceShutdownAt *time.Time `json:"force_shutdown_at"`
	LastError       string     `json:"last_error"`
	ReportID        int64      `json:"report_id"`
	ReportType      string     `json:"report_type"`
	FileName        string     `json:"file_name"` // the uploaded file's name, when known
	// Workers are the Sidekiq processes (identity, and tag when set) that
	// consume the run's queue now; only on a live run's page and JSON.
	Workers     []string  `json:"workers,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	DownloadURL string    `json:"download_url,omitempty"`
	// Expired: retention deleted the run's files (runs_list.go).
	Expired   bool `json:"expired,omitempty"`
	CanCancel bool `json:"can_cancel"`
	CanRetry  bool `json:"can_retry"` // completed with failed rows: they can run again
	// Books says whose records account for the run's rows: "go" (Go's row
	// ledger) or "ruby" (Ruby workers ran rows, known only by done_count;
	// Go pushes none of them again). Empty on run lists.
	Books string `json:"books,omitempty"`
}

// Finished reports whether the run will not change any more (unless a
// retry of its failed rows reopens it).
func (v runView) Finished() bool {
	return v.State == stateCompleted || v.State == stateFailed || v.State == stateCancelled
}

// makeView joins a run's report and status row; either may be missing (the
// status row appears when SplitCsvJob starts; the Rails app deletes it
// when the report is finalized).
func (s *Server) makeView(token string, rep *models.ClientReport, st *models.CsvProcessingStatus) runView {
	v := runView{Token: token, State: statePending}
	start := time.Time{}
	if rep != nil {
		v.ReportID, v.ReportType, v.FileName = rep.ID, reportTypeName(rep.ReportType), rep.SourceName
		v.CreatedAt, v.UpdatedAt = rep.CreatedAt, rep.UpdatedAt
		v.LastError = cleanError(rep.ErrorMessage)
		v.TotalCount = rep.Count
		v.DoneCount = rep.Count
		start = rep.CreatedAt
	}
	if st != nil {
		v.TotalCount, v.DoneCount, v.FailedCount = st.TotalCount, st.DoneCount, st.FailedCount
		v.QueueName, v.WorkerTaskArn = st.QueueName, st.WorkerTaskArn
		v.WorkerStartedAt, v.FinalizedAt, v.ForceShutdownAt = st.WorkerStartedAt, st.FinalizedAt, st.ForceShutdownAt
		v.EndedAt = cmp.Or(st.EndedAt, st.FinalizedAt)
		if st.LastError != "" {
			v.LastError = cleanError(st.LastError)
		}
		v.CreatedAt, v.UpdatedAt = st.CreatedAt, st.UpdatedAt
		if start.IsZero() {
			start = st.CreatedAt
		}
		v.State, v.StateReason = st.RunState(), st.StateReason
		if st.State == "" && rep != nil {
			// No recorded state (a run of an older Pallarel, or a
			// finalizer that holds its claim but is still writing the
			// ZIP): the report says where it is.
			v.State = stateProcessing
		}
	}
	if v.QueueName == "" {
		v.QueueName, _ = s.d.Router.For(token)
	}
	if rep != nil {
		v.Expired = rep.ExpiredAt != nil || rep.DeletedAt != nil
		// The report has the last word unless the run records why it
		// ended otherwise (a cancel marks the report failed).
		switch rep.Status {
		case models.ReportCompleted:
			if v.State != stateFailed && v.State != stateCancelled {
				v.State = stateCompleted
			}
		case models.ReportFailed:
			if v.State != stateCancelled {
				v.State = stateFailed
			}
		case models.ReportProcessing:
			if st == nil {
				v.State = stateProcessing
			}
		}
	}
	if v.State == stateCompleted && v.FailedCount == 0 {
		v.LastError = "" // an error a retry got past: the run succeeded
	}
	if v.State == stateCompleted && !v.Expired {
		v.DownloadURL = "/csv_processing/" + token + "/download"
	}
	ended := v.DoneCount + v.FailedCount
	total := v.TotalCount
	if st != nil && (st.TotalCount == 0 || v.State == stateSplitting) && v.State != stateCompleted {
		// The split has not counted the rows yet (or was cancelled before
		// it could): the total is estimated from what it has read.
		if est, ok := splitEstimate(st); ok {
			est = max(est, ended)
			v.EstimatedTotal, total = &est, est
		}
		if v.Finished() {
			// A run that ended while splitting keeps the rows it had.
			v.TotalCount = max(st.SplitRows, ended)
		}
	}
	switch {
	case v.State == stateCompleted:
		v.Percentage = 100
	case total > 0:
		v.Percentage = math.Floor(float64(ended)*1000/float64(total)) / 10
		v.Percentage = min(v.Percentage, 100)
	}
	// What was shown is never taken back: when the real total replaces a
	// low estimate, the percentage waits for the rows to catch up.
	now := s.d.Now()
	v.Percentage = s.shown.atLeast(token, v.Percentage, v.State == stateCompleted, now)
	if v.Finished() {
		v.CanRetry = v.State == stateCompleted && v.FailedCount > 0 && s.d.Runs != nil
		s.rates.forget(token)
		if v.EndedAt != nil && !start.IsZero() {
			d := math.Round(v.EndedAt.Sub(start).Seconds()*10) / 10
			v.DurationSeconds = &d
			// The mean rate over the whole run, to a tenth of a row a second.
			if d > 0 {
				v.Rate = math.Round(float64(ended)*10/d) / 10
			}
		}
		return v
	}
	v.CanCancel = s.d.Runs != nil
	v.Waiting = strings.HasPrefix(v.StateReason, launcher.WaitingPrefix)
	v.Stalled = v.StateReason != "" && !v.Waiting
	if st == nil {
		return v
	}
	// The ETA comes from the rate over the recent window only. Before the
	// window holds rateMinSpan the rate shown is the average since the
	// workers started, which counts their start: an ETA from it promised
	// an hour for a 15 s run, so there is none until the window fills.
	rate, ok := s.rates.observe(token, now, ended)
	recent := ok
	if since := cmp.Or(v.WorkerStartedAt, &st.CreatedAt); !ok && now.Sub(*since) < rateWindow {
		if el := now.Sub(*since).Seconds(); el > 0 {
			rate, ok = float64(ended)/el, true
		}
	}
	if ok {
		v.Rate = math.Round(rate*100) / 100
	}
	if left := total - ended; recent && rate > 0 && left >= 0 && total > 0 && !v.Stalled {
		eta := math.Round(float64(left) / rate)
		v.ETASeconds = &eta
	}
	return v
}

func reportTypeName(t models.ReportType) string {
	if t == models.ReportTypeText {
		return "text"
	}
	return t.String()
}

// loadRun loads one run by token: 400 for a malformed token, 404 when
// neither a report nor a status row knows it.
func (s *Server) loadRun(ctx context.Context, token string) (runView, error) {
	if err := router.ValidToken(token); err != nil {
		return runView{}, err
	}
	var rep *models.ClientReport
	r, err := s.d.DB.ReportByToken(ctx, token)
	switch {
	case err == nil:
		rep = &r
	case !errors.Is(err, models.ErrNotFound):
		return runView{}, err
	}
	var st *models.CsvProcessingStatus
	row, err := s.d.DB.StatusByToken(ctx, token)
	switch {
	case err == nil:
		st = &row
	case !errors.Is(err, models.ErrNotFound):
		return runView{}, err
	}
	if rep == nil && st == nil {
		return runView{}, s.noSuchRun()
	}
	v := s.makeView(token, rep, st)
	if !v.Finished() {
		v.Workers = s.workersOn(ctx, v.QueueName)
	}
	if b, ok := s.d.Runs.(interface {
		Books(context.Context, string) (string, error)
	}); ok {
		v.Books, _ = b.Books(ctx, token) // an unreadable answer leaves it out
	}
	return v, nil
}

// noSuchRun is the 404 of a well-formed token nothing knows: most often a
// run retention removed, so the page says runs expire, and when.
func (s *Server) noSuchRun() error {
	detail := ""
	if s.d.RetainRuns > 0 {
		detail = "RETAIN_RUNS=" + retainText(s.d.RetainRuns)
	}
	return userErr(http.StatusNotFound, "err_expired_run", detail)
}

// retainText is a retention as RETAIN_* are written: days when whole.
func retainText(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return d.String()
}

// workersOn names the live processes that consume queue. A failure to ask
// Redis leaves the list empty: it is shown, never needed.
func (s *Server) workersOn(ctx context.Context, queue string) []string {
	if s.d.API == nil {
		return nil
	}
	ps, err := s.d.API.Processes(ctx)
	if err != nil {
		s.log.Warn("list processes for a run page", "err", err)
		return nil
	}
	var out []string
	for _, p := range ps {
		if !slices.Contains(p.Queues, queue) {
			continue
		}
		name := p.Identity
		if p.Tag != "" {
			name += " (" + p.Tag + ")"
		}
		out = append(out, name)
	}
	return out
}

// recentRuns lists the newest runs: reports that have a token (a run
// started by us or by SplitCsvJob), joined with their status rows, plus
// status rows without a report.
func (s *Server) recentRuns(ctx context.Context, limit int) ([]runView, error) {
	reps, err := s.d.DB.ReportsWithToken(ctx, nil, 0, limit)
	if err != nil {
		return nil, err
	}
	sts, err := s.d.DB.RecentStatuses(ctx, limit)
	if err != nil {
		return nil, err
	}
	out, err := s.reportViews(ctx, reps)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, v := range out {
		seen[v.Token] = true
	}
	for i := range sts {
		if !seen[sts[i].Token] {
			seen[sts[i].Token] = true
			out = append(out, s.makeView(sts[i].Token, nil, &sts[i]))
		}
	}
	// Newest first across both sources, then cut to limit.
	sortByCreated(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// reportViews joins reports with their status rows (one query) and builds
// their views in the reports' order, one per token.
func (s *Server) reportViews(ctx context.Context, reps []models.ClientReport) ([]runView, error) {
	tokens := make([]string, 0, len(reps))
	for _, r := range reps {
		tokens = append(tokens, r.Token)
	}
	byToken := map[string]*models.CsvProcessingStatus{}
	joined, err := s.d.DB.StatusesByTokens(ctx, tokens)
	if err != nil {
		return nil, err
	}
	for i := range joined {
		byToken[joined[i].Token] = &joined[i]
	}
	seen := map[string]bool{}
	out := make([]runView, 0, len(reps))
	for i := range reps {
		if seen[reps[i].Token] {
			continue
		}
		seen[reps[i].Token] = true
		out = append(out, s.makeView(reps[i].Token, &reps[i], byToken[reps[i].Token]))
	}
	return out, nil
}

func sortByCreated(vs []runView) {
	sort.SliceStable(vs, func(i, k int) bool { return vs[i].CreatedAt.After(vs[k].CreatedAt) })
}

// statusOne is GET /csv_processing/:token.
func (s *Server) statusOne(c *gin.Context) {
	v, err := s.loadRun(c.Request.Context(), c.Param("token"))
	if err != nil {
		s.fail(c, err)
		return
	}
	if wantsJSON(c) {
		c.JSON(http.StatusOK, v)
		return
	}
	page, err := failedPageParam(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	data := statusPage{runView: v, Failed: failedView{Page: 1, Pages: 1}}
	if s.d.Runs != nil {
		data.CancelToken, data.RetryToken = s.runFormToken("cancel", v.Token), s.runFormToken("retry", v.Token)
		if v.FailedCount > 0 || page > 1 {
			if data.Failed, err = s.loadFailed(c.Request.Context(), v.Token, page); err != nil {
				s.fail(c, err)
				return
			}
		}
	}
	l := lang(c)
	s.render(c, http.StatusOK, "status.html", pageData{Lang: l, Title: l.T("status_title"), Data: data})
}

// events is GET /csv_processing/:token/events: Server-Sent Events, one
// "status" event with the run's JSON now and every EventInterval until the
// run is completed or failed or the client goes away.
func (s *Server) events(c *gin.Context) {
	ctx := c.Request.Context()
	token := c.Param("token")
	v, err := s.loadRun(ctx, token)
	if err != nil {
		s.fail(c, err)
		return
	}
	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	c.Status(http.StatusOK)
	// One shared poll per token feeds every stream of it (streams.go).
	updates, stop := s.streams.watch(token)
	defer stop()
	for {
		c.SSEvent("status", v)
		c.Writer.Flush()
		if v.Finished() {
			return
		}
		var u runUpdate
		var ok bool
		select {
		case <-ctx.Done():
			return
		case u, ok = <-updates:
		}
		if !ok {
			return
		}
		if v, err = u.v, u.err; err != nil {
			s.log.Warn("events: load run", "token", token, "err", err)
			c.SSEvent("error", gin.H{"error": lang(c).T("err_unavailable")})
			c.Writer.Flush()
			return
		}
	}
}

// download is GET /csv_processing/:token/download: the report ZIP, as a
// 302 to a presigned URL when the store makes them (S3), else streamed.
func (s *Server) download(c *gin.Context) {
	ctx := c.Request.Context()
	token := c.Param("token")
	if err := router.ValidToken(token); err != nil {
		s.fail(c, err)
		return
	}
	key := contract.ResultKey(token)
	info, err := s.d.Store.Stat(ctx, key)
	if err != nil {
		s.fail(c, s.whyNoDownload(ctx, token, err)) // 409 not ready, 410 expired
		return
	}
	if u, err := s.d.Store.URL(ctx, key, 5*time.Minute); err == nil && u != "" {
		c.Redirect(http.StatusFound, u)
		return
	}
	rc, err := s.d.Store.Open(ctx, key)
	if err != nil {
		s.fail(c, err)
		return
	}
	defer rc.Close()
	c.DataFromReader(http.StatusOK, info.Size, "application/zip", rc, map[string]string{
		"Content-Disposition": `attachment; filename="report-` + token + `.zip"`,
		"Cache-Control":       "private, no-store",
	})
}
