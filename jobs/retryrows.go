package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/csvrows"
	"github.com/pallarel/pallarel/ledger"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/reportzip"
	"github.com/pallarel/pallarel/sidekiq"
)

// retryLockTTL bounds how long a crashed retry keeps others out.
const retryLockTTL = 10 * time.Minute

// RetryFailed runs the failed rows of a completed run again, and only
// those, and returns how many it pushed. It rebuilds the run's row state
// from its ZIP: the rows that were done are put back in row storage and in
// the ledger as they were, the failed rows (known by number) are read
// again from the stored upload (client_reports.source_key) and pushed, and
// the run is reopened (processing, finalized_at cleared) with a new worker
// and a finalizer, which writes a new ZIP over the old one when they end.
// Rows without a number (pushed by Ruby) and rows the CSV cannot parse stay
// failed. It returns contract.ErrNotRetryable or contract.ErrRetryBusy (wrapped) when it
// cannot start.
func (p *Pipeline) RetryFailed(ctx context.Context, token string) (int, error) {
	queue, err := p.tokenQueue(token)
	if err != nil {
		return 0, err
	}
	st, err := p.d.DB.StatusByToken(ctx, token)
	if err != nil {
		return 0, fmt.Errorf("retry %s: %w", token, err)
	}
	rep, err := p.d.DB.ReportByToken(ctx, token)
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
	got, err := p.ledger.LockRetry(ctx, token, retryLockTTL)
	if err != nil {
		return 0, fmt.Errorf("retry %s: %w", token, err)
	}
	if !got {
		return 0, fmt.Errorf("retry %s: %w", token, contract.ErrRetryBusy)
	}
	defer p.ledger.UnlockRetry(context.WithoutCancel(ctx), token)
	log := p.log.With("token", token, "queue", queue, "report_id", rep.ID)
	if err := p.waitFinalizerCleanup(ctx, token, st); err != nil {
		return 0, fmt.Errorf("retry %s: %w", token, err)
	}

	// While the run is still ended nothing else touches its rows: rebuild
	// them from the ZIP, then reopen.
	kept, err := p.restoreFromZip(ctx, token)
	if err != nil {
		return 0, fmt.Errorf("retry %s: %w", token, err)
	}
	runnable := 0
	if len(kept.failedRows) > 0 {
		if runnable, err = p.countRunnable(ctx, rep.SourceKey, kept.failedRows); err != nil {
			return 0, fmt.Errorf("retry %s: %w", token, err)
		}
	}
	if runnable == 0 {
		p.packer.Release(token)
		p.warnIf(p.d.Store.DeletePrefix(ctx, contract.RowKeyPrefix(token)), "delete row files")
		p.warnIf(p.ledger.Expire(ctx, token, 7*24*time.Hour), "Expire")
		if len(kept.failedRows) > 0 {
			return 0, fmt.Errorf("retry %s: %w: its %d failed rows cannot be parsed", token, contract.ErrNothingToRetry, len(kept.failedRows))
		}
		return 0, fmt.Errorf("retry %s: %w: no failed rows", token, contract.ErrNotRetryable)
	}
	total := max(st.TotalCount, kept.maxRow)
	if err := p.ledger.SetTotal(ctx, token, total); err != nil {
		return 0, err
	}
	if err := p.ledger.SetSplitProgress(ctx, token, total); err != nil {
		return 0, err
	}
	reopened, err := p.d.DB.ReopenRun(ctx, token, kept.done, kept.failed-len(kept.failedRows))
	if err != nil {
		return 0, fmt.Errorf("retry %s: %w", token, err)
	}
	if !reopened {
		return 0, fmt.Errorf("retry %s: %w: it changed meanwhile", token, contract.ErrNotRetryable)
	}
	// From here on the run is open: if anything below fails, the run
	// supervisor pushes what is missing and the finalizer ends it.
	ctx = context.WithoutCancel(ctx)
	if err := p.d.DB.MarkReportProcessing(ctx, rep.ID, token); err != nil {
		return 0, fmt.Errorf("retry %s: %w", token, err)
	}
	p.launchWorkers(ctx, token, queue, log)
	typ := reportTypeName(rep.ReportType)
	pushed, err := p.pushRetryRows(ctx, token, queue, typ, rep, kept.failedRows)
	if err != nil {
		return pushed, fmt.Errorf("retry %s: %w", token, err)
	}
	fin, err := p.newFinalizeJob(queue, typ, rep.ID, token)
	if err == nil {
		_, err = p.d.Client.Push(ctx, fin)
	}
	if err != nil {
		return pushed, fmt.Errorf("retry %s: push finalize: %w", token, err)
	}
	log.Info("retrying failed rows", "rows", pushed)
	return pushed, nil
}

// finalizerCleanupWait bounds how long a retry waits for the finalizer of
// the run's previous end to delete the row files: it marks the run ended
// before, and must not delete the files a retry restores.
const finalizerCleanupWait = 15 * time.Second

func (p *Pipeline) waitFinalizerCleanup(ctx context.Context, token string, st models.CsvProcessingStatus) error {
	deadline := time.Now().Add(finalizerCleanupWait)
	for {
		done, err := p.ledger.CleanedUp(ctx, token)
		if err != nil {
			return err
		}
		// An end long ago whose ledger never got its TTL (Redis failed
		// then) is finished too.
		if done || (st.FinalizedAt != nil && p.d.Now().Sub(*st.FinalizedAt) > 2*time.Minute) {
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

// reportTypeName is the SplitCsvJob type of a report type; text is our
// extension (2) beyond Rails' enum.
func reportTypeName(t models.ReportType) string {
	switch t {
	case models.ReportTypePDF:
		return "pdf"
	case 2:
		return "text"
	}
	return "xlsx"
}

// restored is what restoreFromZip put back.
type restored struct {
	done, failed int
	failedRows   map[int]string // row number → the error it failed with
	maxRow       int
}

// restoreFromZip rebuilds token's ledger from its ZIP: done rows are
// written back to row storage in packs, as the row jobs write them, and
// recorded; failed rows without a number are recorded failed again;
// numbered failed rows are left out and returned.
func (p *Pipeline) restoreFromZip(ctx context.Context, token string) (restored, error) {
	out := restored{failedRows: map[int]string{}}
	z, err := p.openResultZip(ctx, token)
	if err != nil {
		return out, err
	}
	defer z.Close()
	files := make(map[string]int, len(z.File))
	for i, f := range z.File {
		files[f.Name] = i
	}
	if err := p.ledger.Reset(ctx, token); err != nil {
		return out, err
	}
	// The packer's commit ids were of the ledger just reset; the row files
	// left are of the first run.
	p.packer.Release(token)
	p.warnIf(p.d.Store.DeletePrefix(ctx, contract.RowKeyPrefix(token)), "delete row files")
	var (
		batch   []ledger.RowResult
		data    [][]byte // batch[i]'s file, or nil
		size    int
		unnamed int
	)
	flush := func() error {
		if len(batch) > 0 {
			if _, _, err := p.packer.CommitRows(ctx, token, batch, data); err != nil {
				return err
			}
		}
		batch, data, size = batch[:0], data[:0], 0
		return nil
	}
	err = z.EachManifest(func(m reportzip.ManifestEntry) error {
		out.maxRow = max(out.maxRow, m.Row)
		key := ledger.RowKey(m.Row, "")
		if m.Row <= 0 {
			unnamed++
			key = fmt.Sprintf("jid-restored-%d", unnamed)
		}
		if m.Status != reportzip.StatusDone {
			out.failed++
			if m.Row > 0 {
				out.failedRows[m.Row] = m.Error
				return nil
			}
			batch, data = append(batch, ledger.RowResult{Row: m.Row, Key: key, Status: "failed", Error: m.Error}), append(data, nil)
			return nil
		}
		out.done++
		r := ledger.RowResult{Row: m.Row, Key: key, Status: "done"}
		i, ok := files[m.File]
		if m.File == "" || !ok {
			batch, data = append(batch, r), append(data, nil)
			return nil
		}
		zf := z.File[i]
		rc, err := zf.Open()
		if err != nil {
			return fmt.Errorf("zip %s: %w", m.File, err)
		}
		defer rc.Close()
		if zf.UncompressedSize64 >= ledger.PackSoloBytes {
			r.File = contract.RowKeyPrefix(token) + m.File
			if err := p.d.Store.Put(ctx, r.File, rc); err != nil {
				return err
			}
			batch, data = append(batch, r), append(data, nil)
		} else {
			b, err := io.ReadAll(rc)
			if err != nil {
				return fmt.Errorf("zip %s: %w", m.File, err)
			}
			r.File = m.File
			batch, data = append(batch, r), append(data, b)
			size += len(b)
		}
		if size >= ledger.PackMaxBytes || len(batch) >= ledger.PackMaxRows {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	p.packer.Release(token)
	return out, err
}

// pushRetryRows reads the upload again and pushes the rows whose numbers are in
// want, as the split pushed them; a row the CSV cannot parse is recorded
// failed again at once.
func (p *Pipeline) pushRetryRows(ctx context.Context, token, queue, typ string, rep models.ClientReport, want map[int]string) (int, error) {
	rc, err := p.d.Store.Open(ctx, rep.SourceKey)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", rep.SourceKey, err)
	}
	defer rc.Close()
	rows, err := csvrows.NewReader(rc, csvrows.Options{})
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", rep.SourceKey, err)
	}
	src, err := p.refsFor(ctx, queue, newRowSource(rep.SourceKey, rows))
	if err != nil {
		return 0, err
	}
	template := ""
	if key := contract.TemplateKey(token); typ == "xlsx" {
		if _, err := p.d.Store.Stat(ctx, key); err == nil {
			template = key
		}
	}
	left := make([]int, 0, len(want))
	for n := range want {
		left = append(left, n)
	}
	sort.Ints(left)
	last := left[len(left)-1]
	path := contract.ReportDir(token)
	batch := make([]*sidekiq.Job, 0, p.d.BatchSize)
	pushed := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if _, err := p.d.Client.PushBulk(ctx, batch); err != nil {
			return fmt.Errorf("push rows: %w", err)
		}
		pushed += len(batch)
		batch = batch[:0]
		return nil
	}
	for {
		row, err := rows.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return pushed, fmt.Errorf("read %s: %w", rep.SourceKey, err)
		}
		if row.Number > last {
			break
		}
		if _, ok := want[row.Number]; !ok {
			continue
		}
		delete(want, row.Number)
		if row.Err != nil {
			isNew, _, err := p.recordRow(ctx, token, ledger.RowResult{Row: row.Number, Key: ledger.RowKey(row.Number, ""), Status: "failed",
				Error: fmt.Sprintf("line %d: %v", row.Line, row.Err)})
			if err != nil {
				return pushed, err
			}
			if isNew {
				p.warnIf(p.d.DB.IncrementFailed(ctx, token, 1), "IncrementFailed")
			}
			continue
		}
		j, err := p.rowJob(queue, path, token, runSpec{SourceKey: rep.SourceKey, Type: typ, ReportID: rep.ID, TemplateKey: template}, rows.Headers(), row, src)
		if err != nil {
			return pushed, err
		}
		batch = append(batch, j)
		if len(batch) >= p.d.BatchSize {
			if err := flush(); err != nil {
				return pushed, err
			}
		}
	}
	if err := flush(); err != nil {
		return pushed, err
	}
	// Rows the upload no longer has (it changed?) stay failed, as before.
	for n, msg := range want {
		if _, _, err := p.recordRow(ctx, token, ledger.RowResult{Row: n, Key: ledger.RowKey(n, ""), Status: "failed", Error: msg}); err != nil {
			return pushed, err
		}
		p.warnIf(p.d.DB.IncrementFailed(ctx, token, 1), "IncrementFailed")
	}
	return pushed, nil
}
