package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/sidekiq"
)

// A reference row job that a Ruby worker of the Rails app fetched (one that
// joined the run after its rows were pushed as references, ROW_CELLS=auto)
// fails in the app's perform(row_hash, type, report_id, path, token) with
// this error; Sidekiq records it in the job, retried or dead.
const (
	rubyArgErrorClass   = "ArgumentError"
	rubyArgErrorMessage = "wrong number of arguments (given 6, expected 5)"
)

// rubyRejectedRef reports whether job is a reference row job a Ruby worker
// refused: Ruby never ran it.
func rubyRejectedRef(job *sidekiq.Job) bool {
	return isRowRefJob(job) && job.StringField("error_class") == rubyArgErrorClass &&
		strings.Contains(job.StringField("error_message"), rubyArgErrorMessage)
}

// failureFields are what Sidekiq's retry writes in a failed job: the
// row job sent back inline starts again without them, its retries whole.
var failureFields = []string{"retry_count", "error_message", "error_class", "error_backtrace", "failed_at", "retried_at", "discarded_at"}

// InlineRubyRejected sends the reference row jobs a Ruby worker refused
// (in the retry and dead sets) back to their queue carrying the row's
// cells, the app's row_hash, so whichever side fetches them runs them: a
// run whose rows went as references before a Ruby worker joined it ends
// with every row run once, without "Retry failed rows". Each row goes
// inline once (a job carrying cells is no reference any more). Only with
// ROW_CELLS=auto: ROW_CELLS=ref promises no cell in Redis, so there the
// dead row is recorded failed. Rows whose result is recorded already, of
// ended runs, or whose upload cannot be read are left to the dead-letter
// monitor. It returns how many it sent back.
func (p *Pipeline) InlineRubyRejected(ctx context.Context) (int, error) {
	if p.d.RowCells != "" && p.d.RowCells != RowCellsAuto {
		return 0, nil
	}
	n := 0
	for _, set := range []sidekiq.SetName{sidekiq.RetrySet, sidekiq.DeadSet} {
		for start := 0; ; start += 500 {
			entries, err := p.d.API.SetEntries(ctx, set, start, 500)
			if err != nil {
				return n, fmt.Errorf("rows Ruby refused: %s set: %w", set, err)
			}
			moved := 0
			for _, e := range entries {
				if e.Job == nil || !rubyRejectedRef(e.Job) {
					continue
				}
				ok, err := p.inlineRejected(ctx, set, e)
				if err != nil {
					return n, err
				}
				if ok {
					moved++
				}
			}
			n += moved
			if len(entries) < 500 {
				break
			}
			start -= moved // the set's entries moved up
		}
	}
	return n, nil
}

// inlineRejected sends one refused reference row job e of set back inline;
// false when it is left where it is.
func (p *Pipeline) inlineRejected(ctx context.Context, set sidekiq.SetName, e sidekiq.Entry) (bool, error) {
	job := e.Job
	if job.IsActiveJob() {
		return false, nil // the app's row job is a plain Sidekiq job
	}
	token := tokenOf(job)
	if _, err := p.tokenQueue(token); err != nil {
		return false, nil
	}
	if why := p.foreignToRun(e, token); why != "" {
		return false, nil // no row of that run: the dead-letter monitor says so
	}
	if st, err := p.d.DB.StatusByToken(ctx, token); err != nil || st.Ended() {
		return false, nil
	}
	rowNum := rowNumber(job)
	if rowNum <= 0 {
		return false, nil
	}
	if have, err := p.ledger.Recorded(ctx, token, []int{rowNum}); err != nil {
		return false, fmt.Errorf("rows Ruby refused: row %d of %s: %w", rowNum, token, err)
	} else if have[0] {
		return false, nil // ran elsewhere: nothing to run again
	}
	var (
		ref          contract.RowRef
		typ          string
		reportID     int64
		path, refTok string
	)
	if err := scanRowRefArgs(job, &ref, &typ, &reportID, &path, &refTok); err != nil {
		return false, nil
	}
	headers, row, err := p.readRowRefRow(ctx, token, ref)
	if err != nil {
		p.log.Warn("a row Ruby refused stays a reference: its upload cannot be read", "token", token, "row", rowNum, "err", err)
		return false, nil
	}
	hash, err := encodeOrdered(headers, row.Fields, row.Nulls)
	if err != nil {
		return false, fmt.Errorf("rows Ruby refused: row %d of %s: %w", rowNum, token, err)
	}
	args, err := job.Arguments()
	if err != nil {
		return false, nil
	}
	inline := job.Clone()
	inline.Args = append([]json.RawMessage{hash}, args[1:5]...)
	for _, f := range failureFields {
		delete(inline.Fields, f)
	}
	inline.SetTime("enqueued_at", p.d.Now(), p.d.Client.Dialect())
	if err := p.d.API.Requeue(ctx, set, e, inline); errors.Is(err, sidekiq.ErrNotFound) {
		return false, nil // another pass, or a person, moved it first
	} else if err != nil {
		return false, fmt.Errorf("rows Ruby refused: row %d of %s: %w", rowNum, token, err)
	}
	p.log.Info("a row Ruby refused as a reference goes again with its cells", "token", token, "row", rowNum, "jid", job.JID, "from", set)
	return true, nil
}
