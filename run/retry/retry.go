// Package retry is "Retry failed rows": a completed run's failed rows run
// again, and only those, and the run ends again through its finalizer
// with a new ZIP. It also lists a run's failed rows for the status page.
//
// The run's state comes from models, its files from storage, its row
// ledger from ledger; the row jobs, the finalizer and the worker launch
// come from its owner's functions (jobs), which it must not import.
package retry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/csvrows"
	"github.com/pallarel/pallarel/ledger"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/storage"
)

// lockTTL bounds how long a crashed retry keeps others out.
const lockTTL = 10 * time.Minute

// finalizerCleanupWait bounds how long a retry waits for the finalizer of
// the run's previous end to delete the row files: it marks the run ended
// before, and must not delete the files a retry restores.
const finalizerCleanupWait = 15 * time.Second

// RowJobs returns how to build the row jobs of the run on queue read again
// from its upload through rows, as the split pushed them (cells or row
// references).
type RowJobs func(ctx context.Context, token, queue string, spec contract.RunSpec, rows *csvrows.Reader) (func(csvrows.Row) (*sidekiq.Job, error), error)

// Params is what a Retrier needs. Every field is required but BatchSize,
// Logger and Now.
type Params struct {
	Runs   *models.Store
	Store  storage.Store
	Ledger ledger.Ledger
	Packer *ledger.Packer
	Client *sidekiq.Client
	// Queue is a token's queue, after checking the token.
	Queue func(token string) (string, error)
	// RowJobs builds the rows pushed again.
	RowJobs RowJobs
	// Finalizer is the run's FinalizeReportJob, started now.
	Finalizer func(queue, typ string, reportID int64, token string) (*sidekiq.Job, error)
	// Launch launches the run's worker, as the split does.
	Launch func(ctx context.Context, token, queue string)
	// BatchSize is how many row jobs go in one push. Defaults to 1000.
	BatchSize int
	// Logger defaults to slog.Default(); Now to time.Now.
	Logger *slog.Logger
	Now    func() time.Time
}

// Retrier retries the failed rows of completed runs.
type Retrier struct {
	p   Params
	log *slog.Logger
}

// New checks p and fills its defaults.
func New(p Params) (*Retrier, error) {
	if p.Runs == nil || p.Store == nil || p.Ledger.Pool == nil || p.Packer == nil || p.Client == nil ||
		p.Queue == nil || p.RowJobs == nil || p.Finalizer == nil || p.Launch == nil {
		return nil, errors.New("retry: runs, storage, ledger, packer, client, queue, row jobs, finalizer and launch are required")
	}
	p.BatchSize = cmp.Or(p.BatchSize, 1000)
	p.Logger = cmp.Or(p.Logger, slog.Default())
	if p.Now == nil {
		p.Now = time.Now
	}
	return &Retrier{p: p, log: p.Logger}, nil
}

// RetryFailed runs the failed rows of a completed run again, and only
// those, and returns how many it pushed. It rebuilds the run's row state
// from its ZIP: the rows that were done are put back in row storage and in
// the ledger as they were, the failed rows (known by number) are read
// again from the stored upload as the split read it (its source_spec:
// the same encoding and template) and pushed, and the run is reopened
// (processing, finalized_at cleared) with a new worker and a finalizer,
// which writes a new ZIP over the old one when they end. Rows without a
// number (pushed by Ruby) and rows the CSV cannot parse stay failed.
//
// It returns contract.ErrNotRetryable, contract.ErrRetryBusy or
// contract.ErrNothingToRetry (wrapped) when it cannot start, and
// models.ErrNotFound when nothing knows the token.
func (r *Retrier) RetryFailed(ctx context.Context, token string) (int, error) {
	queue, err := r.p.Queue(token)
	if err != nil {
		return 0, err
	}
	st, err := r.p.Runs.StatusByToken(ctx, token)
	if err != nil {
		return 0, fmt.Errorf("retry %s: %w", token, err)
	}
	rep, err := r.p.Runs.ReportByToken(ctx, token)
	if err != nil {
		return 0, fmt.Errorf("retry %s: %w", token, err)
	}
	// Completed: ended, with its report completed (a finalizer may leave
	// the state it found rather than record "completed").
	if state := st.RunState(); !st.Ended() || state == models.RunFailed || state == models.RunCancelled || rep.Status != models.ReportCompleted {
		return 0, fmt.Errorf("retry %s: %w: it has not completed", token, contract.ErrNotRetryable)
	}
	if st.FailedCount == 0 {
		return 0, fmt.Errorf("retry %s: %w: no failed rows", token, contract.ErrNotRetryable)
	}
	if rep.SourceKey == "" {
		return 0, fmt.Errorf("retry %s: %w: its CSV was not stored (sent inline)", token, contract.ErrNotRetryable)
	}
	got, err := r.p.Ledger.LockRetry(ctx, token, lockTTL)
	if err != nil {
		return 0, fmt.Errorf("retry %s: %w", token, err)
	}
	if !got {
		return 0, fmt.Errorf("retry %s: %w", token, contract.ErrRetryBusy)
	}
	defer r.p.Ledger.UnlockRetry(context.WithoutCancel(ctx), token)
	log := r.log.With("token", token, "queue", queue, "report_id", rep.ID)
	if err := r.waitFinalizerCleanup(ctx, token, st); err != nil {
		return 0, fmt.Errorf("retry %s: %w", token, err)
	}
	spec := r.spec(ctx, token, st, rep)

	// While the run is still ended nothing else touches its rows: rebuild
	// them from the ZIP, then reopen.
	kept, err := r.restoreFromZip(ctx, token)
	if err != nil {
		return 0, fmt.Errorf("retry %s: %w", token, err)
	}
	runnable := 0
	if len(kept.failedRows) > 0 {
		if runnable, err = r.countRunnable(ctx, spec, kept.failedRows); err != nil {
			return 0, fmt.Errorf("retry %s: %w", token, err)
		}
	}
	if runnable == 0 {
		r.p.Packer.Release(token)
		r.warnIf(r.p.Store.DeletePrefix(ctx, contract.RowKeyPrefix(token)), "delete row files")
		r.warnIf(r.p.Ledger.Expire(ctx, token, 7*24*time.Hour), "expire the ledger")
		if len(kept.failedRows) > 0 {
			return 0, fmt.Errorf("retry %s: %w: its %d failed rows cannot be parsed", token, contract.ErrNothingToRetry, len(kept.failedRows))
		}
		return 0, fmt.Errorf("retry %s: %w: no failed rows", token, contract.ErrNotRetryable)
	}
	total := max(st.TotalCount, kept.maxRow)
	if err := r.p.Ledger.SetTotal(ctx, token, total); err != nil {
		return 0, fmt.Errorf("retry %s: %w", token, err)
	}
	if err := r.p.Ledger.SetSplitProgress(ctx, token, total); err != nil {
		return 0, fmt.Errorf("retry %s: %w", token, err)
	}
	reopened, err := r.p.Runs.ReopenRun(ctx, token, kept.done, kept.failed-len(kept.failedRows))
	if err != nil {
		return 0, fmt.Errorf("retry %s: %w", token, err)
	}
	if !reopened {
		return 0, fmt.Errorf("retry %s: %w: it changed meanwhile", token, contract.ErrNotRetryable)
	}
	// From here on the run is open: if anything below fails, the run
	// supervisor pushes what is missing and the finalizer ends it.
	ctx = context.WithoutCancel(ctx)
	if err := r.p.Runs.MarkReportProcessing(ctx, rep.ID, token); err != nil {
		return 0, fmt.Errorf("retry %s: %w", token, err)
	}
	r.p.Launch(ctx, token, queue)
	pushed, err := r.pushRows(ctx, token, queue, spec, kept.failedRows)
	if err != nil {
		return pushed, fmt.Errorf("retry %s: %w", token, err)
	}
	fin, err := r.p.Finalizer(queue, spec.Type, rep.ID, token)
	if err == nil {
		_, err = r.p.Client.Push(ctx, fin)
	}
	if err != nil {
		return pushed, fmt.Errorf("retry %s: push finalize: %w", token, err)
	}
	log.Info("retrying failed rows", "rows", pushed)
	return pushed, nil
}

// spec is how the split read the run's upload: its source_spec, or for a
// run split before there was one, the report's upload and type with the
// run's template if it has one.
func (r *Retrier) spec(ctx context.Context, token string, st models.CsvProcessingStatus, rep models.ClientReport) contract.RunSpec {
	if spec, ok := contract.ParseRunSpec(st.SourceSpec); ok && spec.SourceKey == rep.SourceKey {
		return spec
	}
	spec := contract.RunSpec{SourceKey: rep.SourceKey, Type: rep.ReportType.SplitType(), ReportID: rep.ID}
	if key := contract.TemplateKey(token); spec.Type == "xlsx" {
		if _, err := r.p.Store.Stat(ctx, key); err == nil {
			spec.TemplateKey = key
		}
	}
	return spec
}

func (r *Retrier) waitFinalizerCleanup(ctx context.Context, token string, st models.CsvProcessingStatus) error {
	deadline := time.Now().Add(finalizerCleanupWait)
	for {
		done, err := r.p.Ledger.CleanedUp(ctx, token)
		if err != nil {
			return err
		}
		// An end long ago whose ledger never got its TTL (Redis failed
		// then) is finished too.
		if done || (st.FinalizedAt != nil && r.p.Now().Sub(*st.FinalizedAt) > 2*time.Minute) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: the run is still finishing", contract.ErrRetryBusy)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// warnIf logs a failed step the retry does not stop for.
func (r *Retrier) warnIf(err error, what string) {
	if err != nil {
		r.log.Warn("retry: "+what+" failed", "err", err)
	}
}
