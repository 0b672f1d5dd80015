package jobs

import (
	"context"
	"encoding/json"

	"github.com/pallarel/pallarel/sidekiq"
)

// jobDied marks the report failed, with the reason, when its split or
// finalize job has failed for good (retries spent, or killed), and removes
// any partial result object. While retries remain, the report stays
// processing and only last_error shows the latest problem.
func (p *Pipeline) jobDied(ctx context.Context, job *sidekiq.Job, jobErr error) {
	var reportPos, tokenPos int
	switch job.HandlerClass() {
	case SplitClass:
		reportPos, tokenPos = 2, -1
	case FinalizeClass, "FinalizeReportJob":
		reportPos, tokenPos = 2, 3
	default:
		return
	}
	args, err := job.Arguments()
	if err != nil || len(args) <= reportPos {
		return
	}
	var reportID int64
	if json.Unmarshal(args[reportPos], &reportID) != nil {
		return
	}
	if err := p.d.DB.MarkReportFailed(ctx, reportID, jobErr.Error()); err != nil {
		p.log.Error("mark report failed", "report_id", reportID, "err", err)
	}
	if tokenPos < 0 || len(args) <= tokenPos {
		return
	}
	var token string
	if json.Unmarshal(args[tokenPos], &token) != nil {
		return
	}
	if _, err := p.tokenQueue(token); err != nil {
		return
	}
	_ = p.d.DB.SetLastError(ctx, token, jobErr.Error())
	_ = p.d.Store.Delete(ctx, ResultKey(token))
}
