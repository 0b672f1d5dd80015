package server

import (
	"context"
	"errors"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/router"
)

// The states a run is shown in.
const (
	statePending    = "pending"
	stateProcessing = "processing"
	stateCompleted  = "completed"
	stateFailed     = "failed"
)

// runView is one run as the status pages, the events stream and the JSON
// API show it: the Rails columns of csv_processing_statuses, plus state,
// failed_count, report_id and the derived progress figures.
type runView struct {
	Token           string     `json:"token"`
	State           string     `json:"state"`
	TotalCount      int        `json:"total_count"`
	DoneCount       int        `json:"done_count"`
	FailedCount     int        `json:"failed_count"`
	Percentage      float64    `json:"percentage"`
	Rate            float64    `json:"rate"`        // rows per second since the worker started
	ETASeconds      *float64   `json:"eta_seconds"` // null when unknown
	QueueName       string     `json:"queue_name"`
	WorkerTaskArn   string     `json:"worker_task_arn"`
	WorkerStartedAt *time.Time `json:"worker_started_at"`
	FinalizedAt     *time.Time `json:"finalized_at"`
	ForceShutdownAt *time.Time `json:"force_shutdown_at"`
	LastError       string     `json:"last_error"`
	ReportID        int64      `json:"report_id"`
	ReportType      string     `json:"report_type"`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
	DownloadURL     string     `json:"download_url,omitempty"`
	// Expired: retention deleted the run's files (runs_list.go).
	Expired bool `json:"expired,omitempty"`
}

// Finished reports whether the run will not change any more.
func (v runView) Finished() bool { return v.State == stateCompleted || v.State == stateFailed }

// makeView joins a run's report and status row; either may be missing (the
// status row appears when SplitCsvJob starts and is deleted when the report
// is finalized, as in the Rails app).
func (s *Server) makeView(token string, rep *models.ClientReport, st *models.CsvProcessingStatus) runView {
	v := runView{Token: token, State: statePending}
	if rep != nil {
		v.ReportID, v.ReportType = rep.ID, reportTypeName(rep.ReportType)
		v.CreatedAt, v.UpdatedAt = rep.CreatedAt, rep.UpdatedAt
		v.LastError = cleanError(rep.ErrorMessage)
		v.TotalCount = rep.Count
		v.DoneCount = rep.Count
	}
	if st != nil {
		v.TotalCount, v.DoneCount, v.FailedCount = st.TotalCount, st.DoneCount, st.FailedCount
		v.QueueName, v.WorkerTaskArn = st.QueueName, st.WorkerTaskArn
		v.WorkerStartedAt, v.FinalizedAt, v.ForceShutdownAt = st.WorkerStartedAt, st.FinalizedAt, st.ForceShutdownAt
		if st.LastError != "" {
			v.LastError = cleanError(st.LastError)
		}
		v.CreatedAt, v.UpdatedAt = st.CreatedAt, st.UpdatedAt
		v.State = stateProcessing
	}
	if v.QueueName == "" {
		v.QueueName, _ = s.d.Router.For(token)
	}
	if rep != nil {
		v.Expired = rep.ExpiredAt != nil || rep.DeletedAt != nil
		switch rep.Status {
		case models.ReportCompleted:
			v.State = stateCompleted
			if !v.Expired {
				v.DownloadURL = "/csv_processing/" + token + "/download"
			}
		case models.ReportFailed:
			v.State = stateFailed
		case models.ReportProcessing:
			v.State = stateProcessing
		}
	}
	if v.State == stateCompleted && v.FailedCount == 0 {
		v.LastError = "" // an error a retry got past: the run succeeded
	}
	switch {
	case v.State == stateCompleted:
		v.Percentage = 100
	case v.TotalCount > 0:
		v.Percentage = math.Round(float64(v.DoneCount+v.FailedCount)*1000/float64(v.TotalCount)) / 10
		v.Percentage = min(v.Percentage, 100)
	}
	if v.State == stateProcessing && v.WorkerStartedAt != nil {
		if el := s.d.Now().Sub(*v.WorkerStartedAt).Seconds(); el > 0 {
			ended := v.DoneCount + v.FailedCount
			v.Rate = math.Round(float64(ended)/el*100) / 100
			if left := v.TotalCount - ended; v.Rate > 0 && left >= 0 {
				eta := math.Round(float64(left) / (float64(ended) / el))
				v.ETASeconds = &eta
			}
		}
	}
	return v
}

func reportTypeName(t models.ReportType) string {
	if t == reportTypeText {
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
		return runView{}, errNotFound
	}
	return s.makeView(token, rep, st), nil
}

// recentRuns lists the newest runs: reports that have a token (a run
// started by us or by SplitCsvJob), joined with their status rows, plus
// status rows without a report.
func (s *Server) recentRuns(ctx context.Context, limit int) ([]runView, error) {
	var reps []models.ClientReport
	if err := s.db().WithContext(ctx).Where("token IS NOT NULL AND token <> ''").
		Order("id DESC").Limit(limit).Find(&reps).Error; err != nil {
		return nil, err
	}
	sts, err := s.d.DB.RecentStatuses(ctx, limit)
	if err != nil {
		return nil, err
	}
	tokens := make([]string, 0, len(reps))
	for _, r := range reps {
		tokens = append(tokens, r.Token)
	}
	byToken := map[string]*models.CsvProcessingStatus{}
	if len(tokens) > 0 {
		var joined []models.CsvProcessingStatus
		if err := s.db().WithContext(ctx).Where("token IN ?", tokens).Find(&joined).Error; err != nil {
			return nil, err
		}
		for i := range joined {
			byToken[joined[i].Token] = &joined[i]
		}
	}
	seen := map[string]bool{}
	var out []runView
	for i := range reps {
		if seen[reps[i].Token] {
			continue
		}
		seen[reps[i].Token] = true
		out = append(out, s.makeView(reps[i].Token, &reps[i], byToken[reps[i].Token]))
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
	l := lang(c)
	s.render(c, http.StatusOK, "status.html", pageData{Lang: l, Title: l.T("status_title"), Data: v})
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
	key := jobs.ResultKey(token)
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
