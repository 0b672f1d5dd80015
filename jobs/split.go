package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/csvrows"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/run"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/storage"
)

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
		p.warnIf(p.d.DB.MarkReportFailed(ctx, reportID, err.Error()), "MarkReportFailed")
		return sidekiq.Kill(err)
	}
	var ref contract.SourceRef
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

	// The upload in storage is the run's source of truth: a Rails-style
	// split (the CSV inline in the job) stores it first, so the run can be
	// rebuilt from storage if Redis loses its jobs.
	if ref.SourceKey == "" {
		ref.SourceKey = contract.UploadKey(token)
		if err := p.d.Store.Put(ctx, ref.SourceKey, strings.NewReader(inline)); err != nil {
			return fmt.Errorf("split %s: store the inline CSV: %w", token, err)
		}
		if err := p.d.DB.SetReportSource(ctx, reportID, ref.SourceKey); err != nil {
			return fmt.Errorf("split %s: %w", token, err)
		}
	}
	rc, err := p.d.Store.Open(ctx, ref.SourceKey)
	if errors.Is(err, storage.ErrNotExist) {
		msg := fmt.Sprintf("CSV cannot be read: %s does not exist", ref.SourceKey)
		_, endErr := p.End(ctx, token, run.Ending{State: run.Failed, Reason: msg})
		p.warnIf(endErr, "End")
		return fail(errors.New(msg))
	}
	if err != nil {
		return fmt.Errorf("split: open %s: %w", ref.SourceKey, err)
	}
	_, err = csvrows.NewReader(rc, csvrows.Options{Encoding: ref.Encoding})
	rc.Close()
	if err != nil {
		msg := fmt.Sprintf("CSV cannot be read: %v", err)
		p.warnIf(p.d.DB.MarkReportFailed(ctx, reportID, msg), "MarkReportFailed")
		_, endErr := p.End(ctx, token, run.Ending{State: run.Failed, Reason: msg})
		p.warnIf(endErr, "End")
		log.Error("split: unreadable CSV", "err", err)
		return sidekiq.Kill(errors.New(msg))
	}
	spec, err := json.Marshal(runSpec{SourceKey: ref.SourceKey, Encoding: ref.Encoding, TemplateKey: ref.TemplateKey, Type: typ, ReportID: reportID})
	if err != nil {
		return err
	}
	if err := p.d.DB.SetSourceSpec(ctx, token, string(spec)); err != nil {
		return fmt.Errorf("split %s: %w", token, err)
	}
	st, err := p.d.DB.StatusByToken(ctx, token)
	if err != nil {
		return fmt.Errorf("split %s: %w", token, err)
	}
	if st.State == "" {
		p.warnIf(p.d.DB.SetState(ctx, token, models.RunSplitting, ""), "SetState")
	}

	p.launchWorkers(ctx, token, queue, log)

	// The rows are pushed by a feeder outside the worker's processors, a
	// window at a time as rows end; the run supervisor resumes it
	// wherever it stopped.
	p.ensureFeeding(ctx, token)
	log.Info("split started", "source", ref.SourceKey)
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
	if p.noteWaiting(ctx, token, err) {
		// The run supervisor launches it when its turn comes.
		log.Info("run waits for a worker", "reason", err.Error())
		p.warnIf(p.d.DB.ReleaseWorkerLaunch(ctx, token), "ReleaseWorkerLaunch")
		return
	}
	if err != nil {
		log.Error("launch worker", "err", err)
		p.warnIf(p.d.DB.SetLastError(ctx, token, "worker launch failed: "+err.Error()), "SetLastError")
		p.warnIf(p.d.DB.ReleaseWorkerLaunch(ctx, token), "ReleaseWorkerLaunch")
		return
	}
	if err := p.d.DB.RecordWorker(ctx, token, task.ID, task.StartedAt); err != nil {
		log.Error("record worker", "err", err)
	}
	log.Info("worker launched", "task", task.ID)
}
