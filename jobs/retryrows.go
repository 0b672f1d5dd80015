package jobs

import (
	"context"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/csvrows"
	"github.com/pallarel/pallarel/run/retry"
	"github.com/pallarel/pallarel/sidekiq"
)

// newRetrier is the pipeline's "Retry failed rows" (run/retry), pushing
// rows as the split does.
func (p *Pipeline) newRetrier() (*retry.Retrier, error) {
	return retry.New(retry.Params{
		Runs: p.d.DB, Store: p.d.Store, Ledger: p.ledger, Packer: p.packer, Client: p.d.Client,
		Queue: p.tokenQueue, RowJobs: p.retryRowJobs, Finalizer: p.newFinalizeJob,
		Launch: func(ctx context.Context, token, queue string) {
			p.launchWorkers(ctx, token, queue, p.log.With("token", token, "queue", queue))
		},
		BatchSize: p.d.BatchSize, Logger: p.log, Now: p.d.Now,
	})
}

// retryRowJobs builds the row jobs a retry pushes: as the split would,
// cells or references (ROW_CELLS) into the run's upload.
func (p *Pipeline) retryRowJobs(ctx context.Context, token, queue string, spec contract.RunSpec, rows *csvrows.Reader) (func(csvrows.Row) (*sidekiq.Job, error), error) {
	src, err := p.refsFor(ctx, queue, newRowSource(spec.SourceKey, rows))
	if err != nil {
		return nil, err
	}
	path := contract.ReportDir(token)
	return func(row csvrows.Row) (*sidekiq.Job, error) {
		return p.rowJob(queue, path, token, spec, rows.Headers(), row, src)
	}, nil
}

// RetryFailed is retry.Retrier.RetryFailed: the failed rows of a completed
// run run again.
func (p *Pipeline) RetryFailed(ctx context.Context, token string) (int, error) {
	return p.retry.RetryFailed(ctx, token)
}

// FailedRows is retry.Retrier.FailedRows: a page of a run's failed rows.
func (p *Pipeline) FailedRows(ctx context.Context, token string, offset, limit int) (contract.FailedPage, error) {
	return p.retry.FailedRows(ctx, token, offset, limit)
}
