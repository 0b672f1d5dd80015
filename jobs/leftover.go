package jobs

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/sidekiq"
)

// leftoverExamined bounds how many leftover jobs of an ended run are looked
// at one by one; normally there are none or a few re-pushed duplicates.
const leftoverExamined = 1000

// purgeTokenQueue empties an ended run's queue and its retries. The run's
// own jobs (rows already in the ledger, a second finalize) go quietly; a job
// that is not the run's (garbage, an unknown class, wrong arguments, another
// token's row pushed there by a hostile or buggy client) goes to the dead
// set with the reason, so nothing another client pushed vanishes unseen.
func (p *Pipeline) purgeTokenQueue(ctx context.Context, token, queue string) (purged, killed int, err error) {
	return p.d.API.PurgeQueueKeepingForeign(ctx, queue, leftoverExamined, func(e sidekiq.Entry) string {
		why := p.foreignToRun(e, token)
		if why == "" {
			return ""
		}
		return fmt.Sprintf("left on the queue of run %s when it ended: %s", token, why)
	})
}

// foreignToRun says why e is not one of the run's own jobs, or "".
func (p *Pipeline) foreignToRun(e sidekiq.Entry, token string) string {
	if e.Job == nil {
		return fmt.Sprintf("not a job: %v", e.Err)
	}
	job := e.Job
	switch job.HandlerClass() {
	case contract.Row.Name, "ProcessCsvRowJob":
		var (
			row      json.RawMessage
			typ      string
			reportID int64
			path     string
			tok      string
		)
		if isRowRefJob(job) {
			var ref contract.RowRef
			if err := scanRowRefArgs(job, &ref, &typ, &reportID, &path, &tok); err != nil {
				return err.Error()
			}
			break
		}
		if err := job.ScanArgs(&row, &typ, &reportID, &path, &tok); err != nil {
			return err.Error()
		}
		if len(row) > maxRowHashBytes {
			return fmt.Sprintf("row_hash of %d bytes is larger than any row a split makes", len(row))
		}
		if _, _, err := orderedObject(row); err != nil {
			return fmt.Sprintf("row_hash: %v", err)
		}
	case contract.Finalize.Name, "FinalizeReportJob", contract.Idle.Name, contract.CancelCleanup.Name:
	default:
		return fmt.Sprintf("%s is not a job of this run", job.Class)
	}
	if err := checkIsolation(p.tokenQueue, job); err != nil {
		return err.Error()
	}
	return ""
}
