package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pallarel/pallarel/csvrows"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/storage"
)

// SourceRef is SplitCsvJob's first argument when the CSV travels by storage
// reference instead of inline (a Go extension: the Rails controller sends
// the whole CSV as a string, which does not scale to large files).
type SourceRef struct {
	SourceKey   string `json:"source_key"`             // storage key of the uploaded CSV
	Token       string `json:"token,omitempty"`        // token chosen at upload time
	Encoding    string `json:"encoding,omitempty"`     // "", "auto", "utf-8", "shift_jis", "cp932"
	TemplateKey string `json:"template_key,omitempty"` // storage key of an XLSX template
}

// NewSplitJob builds a SplitCsvJob as the Rails controller enqueues it
// (ActiveJob, queue "report"); src is the CSV text or a SourceRef.
func NewSplitJob(d sidekiq.Dialect, src any, typ string, reportID int64) (*sidekiq.Job, error) {
	return sidekiq.NewActiveJob(d, SplitClass, TriggerQueue, src, typ, reportID)
}

// handleSplit reads the CSV, records the run, starts the token's workers
// and pushes one row job per row, then the finalizer. It can be run again
// after a crash: the token is kept on the report, and rows already pushed
// are skipped.
func (p *Pipeline) handleSplit(ctx context.Context, job *sidekiq.Job) error {
	var (
		src      json.RawMessage
		typ      string
		reportID int64
	)
	if err := job.ScanArgs(&src, &typ, &reportID); err != nil {
		return err
	}
	// fail ends a run that can never succeed: the report says why (instead
	// of staying pending for ever) and the job goes to the dead set.
	fail := func(err error) error {
		_ = p.d.DB.MarkReportFailed(ctx, reportID, err.Error())
		return sidekiq.Kill(err)
	}
	var ref SourceRef
	var inline string
	if err := json.Unmarshal(src, &inline); err != nil {
		if err := json.Unmarshal(src, &ref); err != nil || ref.SourceKey == "" {
			return fail(fmt.Errorf("%w: first argument must be the CSV text or {\"source_key\": ...}", sidekiq.ErrBadArgs))
		}
	}
	if typ == "" || typ == "default" {
		typ = "xlsx"
	}
	if _, err := p.d.Renderers.Get(typ); err != nil {
		return fail(fmt.Errorf("report type %q: %w", typ, err))
	}
	report, err := p.d.DB.ReportByID(ctx, reportID)
	if err != nil {
		return fmt.Errorf("split: report %d: %w", reportID, err)
	}
	token := ref.Token
	switch {
	case token == "" && report.Token != "":
		token = report.Token // a re-run: keep the run it started
	case token == "":
		token = router.NewToken()
	case report.Token != "" && report.Token != token:
		return sidekiq.Kill(fmt.Errorf("split: report %d already runs as token %s, not %s", reportID, report.Token, token))
	}
	queue, err := p.tokenQueue(token)
	if err != nil {
		return fail(err)
	}
	log := p.log.With("token", token, "queue", queue, "report_id", reportID)
	if err := p.d.DB.MarkReportProcessing(ctx, reportID, token); err != nil {
		return fmt.Errorf("split: %w", err)
	}
	if _, err := p.d.DB.CreateStatus(ctx, token, queue, 0); err != nil {
		return fmt.Errorf("split: %w", err)
	}

	var in io.Reader
	if ref.SourceKey != "" {
		rc, err := p.d.Store.Open(ctx, ref.SourceKey)
		if errors.Is(err, storage.ErrNotExist) {
			msg := fmt.Sprintf("CSV cannot be read: %s does not exist", ref.SourceKey)
			_ = p.d.DB.SetLastError(ctx, token, msg)
			return fail(errors.New(msg))
		}
		if err != nil {
			return fmt.Errorf("split: open %s: %w", ref.SourceKey, err)
		}
		defer rc.Close()
		in = rc
	} else {
		in = strings.NewReader(inline)
	}
	rows, err := csvrows.NewReader(in, csvrows.Options{Encoding: ref.Encoding})
	if err != nil {
		msg := fmt.Sprintf("CSV cannot be read: %v", err)
		_ = p.d.DB.MarkReportFailed(ctx, reportID, msg)
		_ = p.d.DB.SetLastError(ctx, token, msg)
		log.Error("split: unreadable CSV", "err", err)
		return sidekiq.Kill(errors.New(msg))
	}

	p.launchWorkers(ctx, token, queue, log)

	done, err := p.ledger.SplitProgress(ctx, token)
	if err != nil {
		return err
	}
	path := "/tmp/reports/" + token
	batch := make([]*sidekiq.Job, 0, p.d.BatchSize)
	last, failed := done, 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		// A worker shutting down has given this job back: stop pushing,
		// the next run resumes from the recorded progress.
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("split %s: %w", token, err)
		}
		if _, err := p.d.Client.PushBulk(ctx, batch); err != nil {
			return fmt.Errorf("split %s: push rows: %w", token, err)
		}
		batch = batch[:0]
		return p.ledger.SetSplitProgress(ctx, token, last)
	}
	for {
		row, err := rows.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			msg := fmt.Sprintf("CSV read stopped after row %d: %v", last, err)
			_ = p.d.DB.SetLastError(ctx, token, msg)
			return fmt.Errorf("split %s: %s", token, msg)
		}
		if row.Number <= done {
			continue
		}
		last = row.Number
		if row.Err != nil {
			isNew, _, err := p.ledger.Record(ctx, token, RowResult{Row: row.Number, Key: RowKey(row.Number, ""), Status: "failed",
				Error: rowErrorText(row.Line, row.Err)})
			if err != nil {
				return err
			}
			if isNew {
				failed++
				_ = p.d.DB.IncrementFailed(ctx, token, 1)
			}
			continue
		}
		hash, err := encodeOrdered(rows.Headers(), row.Fields)
		if err != nil {
			return err
		}
		j, err := sidekiq.NewJob(RowClass, hash, typ, reportID, path, token)
		if err != nil {
			return err
		}
		j.Queue, j.Retry = queue, json.RawMessage("3")
		_ = j.SetField(fieldRow, row.Number)
		if ref.TemplateKey != "" {
			_ = j.SetField(fieldTemplate, ref.TemplateKey)
		}
		batch = append(batch, j)
		if len(batch) >= p.d.BatchSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if err := p.d.DB.SetTotal(ctx, token, last); err != nil {
		return fmt.Errorf("split %s: %w", token, err)
	}
	if err := p.ledger.SetTotal(ctx, token, last); err != nil {
		return fmt.Errorf("split %s: %w", token, err)
	}
	fin, err := p.newFinalizeJob(queue, typ, reportID, token)
	if err != nil {
		return err
	}
	if _, err := p.d.Client.Push(ctx, fin); err != nil {
		return fmt.Errorf("split %s: push finalize: %w", token, err)
	}
	log.Info("split done", "rows", last, "bad_rows", failed, "headers", len(rows.Headers()))
	return nil
}

// launchWorkers starts the token's worker once per token: the DB claim
// (worker_started_at) is the lock, the launcher itself reuses a live task.
// A failure is logged and recorded; the rows wait in the queue for a worker.
func (p *Pipeline) launchWorkers(ctx context.Context, token, queue string, log interface {
	Info(string, ...any)
	Error(string, ...any)
}) {
	claimed, err := p.d.DB.ClaimWorkerLaunch(ctx, token)
	if err != nil || !claimed {
		if err != nil {
			log.Error("claim worker launch", "err", err)
		}
		return
	}
	task, err := p.d.Launcher.Launch(ctx, launcher.Request{Token: token, Queue: queue})
	if err != nil {
		log.Error("launch worker", "err", err)
		_ = p.d.DB.SetLastError(ctx, token, "worker launch failed: "+err.Error())
		_ = p.d.DB.ReleaseWorkerLaunch(ctx, token)
		return
	}
	if err := p.d.DB.RecordWorker(ctx, token, task.ID, task.StartedAt); err != nil {
		log.Error("record worker", "err", err)
	}
	log.Info("worker launched", "task", task.ID)
}

// rowErrorText is a malformed row's manifest error. A csvrows.RecordError
// already starts with "line N (row M)": it is not prefixed again.
func rowErrorText(line int, err error) string {
	var re *csvrows.RecordError
	if errors.As(err, &re) {
		return err.Error()
	}
	return fmt.Sprintf("line %d: %v", line, err)
}
