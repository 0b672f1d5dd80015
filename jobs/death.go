package jobs

import (
	"context"
	"encoding/json"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/run"
	"github.com/pallarel/pallarel/sidekiq"
)

// jobDied marks the report failed, with the reason, when its split or
// finalize job has failed for good (retries spent, or killed), and removes
// any partial result object. While retries remain, the report stays
// processing and only last_error shows the latest problem.
func (p *Pipeline) jobDied(ctx context.Context, job *sidekiq.Job, jobErr error) {
	var reportPos, tokenPos int
	switch job.HandlerClass() {
	case contract.Split.Name:
		reportPos, tokenPos = 2, -1
	case contract.Finalize.Name, "FinalizeReportJob":
		reportPos, tokenPos = 2, contract.FinalizeTokenPos
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
	var token string
	if tokenPos >= 0 && len(args) > tokenPos {
		if json.Unmarshal(args[tokenPos], &token) != nil {
			return
		}
	} else if rep, err := p.d.DB.ReportByID(ctx, reportID); err == nil {
		token = rep.Token // a split that got as far as giving the run a token
	}
	if _, err := p.tokenQueue(token); err != nil {
		return
	}
	// The run has ended too: otherwise the supervisor would see a run
	// without a finalizer and push another. (End deletes a partial ZIP.)
	_, err = p.End(ctx, token, run.Ending{State: run.Failed, Reason: jobErr.Error()})
	p.warnIf(err, "End")
}
