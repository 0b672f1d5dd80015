package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/ledger"
	"github.com/pallarel/pallarel/reportzip"
	"github.com/pallarel/pallarel/run"
	"github.com/pallarel/pallarel/sidekiq"
)

// finalizeJob builds Report::FinalizeReportJob on the token's queue, with
// the contract's argument order and retry.
func finalizeJob(queue, dir, typ string, reportID int64, token string, interval, maxWait int, startedAt int64) (*sidekiq.Job, error) {
	return toSidekiq(sidekiq.Dialect8, contract.FinalizeJob(queue, contract.FinalizeArgs{Path: dir, Type: typ, ReportID: reportID,
		Token: token, IntervalSec: interval, MaxWaitSec: maxWait, StartedAt: startedAt}))
}

// newFinalizeJob is finalizeJob with the pipeline's interval and maximum
// wait, started now.
func (p *Pipeline) newFinalizeJob(queue, typ string, reportID int64, token string) (*sidekiq.Job, error) {
	return finalizeJob(queue, contract.ReportDir(token), typ, reportID, token,
		int(p.d.FinalizeInterval.Seconds()), int(p.d.MaxWait.Seconds()), p.d.Now().Unix())
}

// handleFinalize waits for every row to end, then (exactly once) zips the
// row files with a manifest, stores the ZIP, records the result, cleans up
// the token's queue and stops its workers:
// [path, type, report_id, token, interval_sec=10, max_wait_sec=43200, started_at].
func (p *Pipeline) handleFinalize(ctx context.Context, job *sidekiq.Job) error {
	var (
		dir, typ  string
		reportID  int64
		token     string
		interval  = int(p.d.FinalizeInterval.Seconds())
		maxWait   = int(p.d.MaxWait.Seconds())
		startedAt int64
	)
	if err := job.ScanArgsMin(4, &dir, &typ, &reportID, &token, &interval, &maxWait, &startedAt); err != nil {
		return err
	}
	queue, err := p.tokenQueue(token)
	if err != nil {
		return err
	}
	status, err := p.d.DB.StatusByToken(ctx, token)
	if err != nil {
		return fmt.Errorf("finalize %s: %w", token, err)
	}
	if status.FinalizedAt != nil {
		return nil // another copy finished it
	}
	p.track(ctx, token) // a Ruby split's run: dropped if the app's finalizer ends it
	ended, err := p.ledger.Count(ctx, token)
	if err != nil {
		return err
	}
	now := p.d.Now()
	if startedAt == 0 {
		if t, ok := job.Time("created_at"); ok {
			startedAt = t.Unix()
		} else {
			startedAt = now.Unix()
		}
	}
	timedOut := now.Sub(time.Unix(startedAt, 0)) >= time.Duration(maxWait)*time.Second
	var missing missingRows
	if timedOut {
		missing.reason = "no result before max_wait_sec"
	}
	if ended < status.TotalCount && !timedOut && p.rubyRanTheRest(ctx, status, ended) {
		// Ruby keeps the books and the database counts every row ended:
		// the rows Go has no result for ran on a Ruby worker, whose files
		// are in APP_REPORTS_DIR when Go shares it, else on that worker's
		// machine (books.go, appdir.go).
		ended, missing = status.TotalCount, missingRows{ruby: true,
			reason: "run by a Ruby worker: its file stayed in that worker's /tmp/reports"}
	}
	if ended < status.TotalCount && !timedOut {
		again, err := finalizeJob(queue, dir, typ, reportID, token, interval, maxWait, startedAt)
		if err != nil {
			return err
		}
		again.At = now.Add(time.Duration(max(interval, 1)) * time.Second)
		if _, err := p.d.Client.Push(ctx, again); err != nil {
			return fmt.Errorf("finalize %s: re-enqueue: %w", token, err)
		}
		return nil
	}
	claimed, err := p.d.DB.ClaimFinalize(ctx, token)
	if err != nil {
		return fmt.Errorf("finalize %s: claim: %w", token, err)
	}
	if !claimed {
		return nil
	}
	log := p.log.With("token", token, "report_id", reportID)
	count, err := p.finalize(ctx, token, status.TotalCount, missing)
	// What finalize held a row (the ledger's frame of each row, the ZIP's
	// name hashes: some 100 MB of heap at 3.4 M rows) is garbage now, yet
	// the runtime kept those pages for minutes after a run (bench/memory.sh):
	// hand them back at once, a GC once a run.
	debug.FreeOSMemory()
	if err != nil {
		// The report stays processing while retries remain; jobDied marks
		// it failed when they are spent.
		log.Error("finalize failed", "err", err)
		p.warnIf(p.d.Store.Delete(context.WithoutCancel(ctx), contract.ResultKey(token)), "delete a partial result")
		p.warnIf(p.d.DB.SetLastError(ctx, token, err.Error()), "SetLastError")
		p.warnIf(p.d.DB.ReleaseFinalize(ctx, token), "ReleaseFinalize")
		return err
	}
	if err := p.d.DB.MarkReportCompleted(ctx, reportID, contract.ResultKey(token), count); err != nil {
		p.warnIf(p.d.DB.ReleaseFinalize(ctx, token), "ReleaseFinalize")
		return fmt.Errorf("finalize %s: %w", token, err)
	}
	if _, err := p.End(ctx, token, run.Ending{State: run.Completed, Worker: "report " + token + " finished"}); err != nil {
		log.Warn("end the run", "err", err)
	}
	log.Info("report finished", "files", count, "result", contract.ResultKey(token))
	return nil
}

// missingRows says what the rows with no result in Go's ledger are.
type missingRows struct {
	// reason, when set, fails them with this reason (the wait ran out, or
	// Ruby ran them); else only a numbered run's missing rows fail.
	reason string
	// ruby: a Ruby worker ran them. Their files, when Go finds the app's
	// in APP_REPORTS_DIR, go in the ZIP under ruby/, and the rows count as
	// done.
	ruby bool
}

// rubyRowNote is the manifest's word on a row a Ruby worker ran, whose file
// is in the ZIP under a name of the app's.
const rubyRowNote = "run by a Ruby worker: its file is one of the ZIP's ruby/ entries (the app's file names do not give the row)"

// finalize writes the ZIP and returns the number of row files in it. It
// streams: the ledger is read in chunks, row files come from storage one by
// one (packs a few at a time) and the manifest is spooled to a temporary
// file, so memory does not grow with the number of rows.
func (p *Pipeline) finalize(ctx context.Context, token string, total int, miss missingRows) (int, error) {
	appFiles := 0
	if miss.ruby {
		var err error
		if appFiles, err = p.eachAppFile(token, nil); err != nil {
			return 0, err
		}
	}
	spool, err := os.CreateTemp("", "pallarel-manifest-*.csv")
	if err != nil {
		return 0, fmt.Errorf("manifest spool: %w", err)
	}
	defer os.Remove(spool.Name())
	defer spool.Close()

	pr, pw := io.Pipe()
	count, done, failed := 0, 0, 0
	// The writer goroutine is waited for whatever Put does, so it never
	// outlives the spool and the packs it reads.
	written := make(chan struct{})
	defer func() { <-written }()
	go func() {
		defer close(written)
		zw := reportzip.NewWriter(pw)
		zw.Expect(total)
		defer zw.Close() // a no-op after the Close below; on errors it releases the spooled directory
		manifest := reportzip.NewManifest(spool)
		packs := ledger.NewPackReader(p.d.Store, token)
		defer packs.Close()
		add := func(r ledger.RowResult) error {
			e := reportzip.ManifestEntry{Row: r.Row, Status: r.Status, Error: r.Error}
			if r.Status == "done" && (r.File != "" || r.Pack != "") {
				rc, name, err := packs.Open(ctx, r)
				if err != nil {
					e.Status, e.Error = "failed", fmt.Sprintf("row file missing: %v", err)
				} else {
					_, err = zw.Add(name, rc, p.d.Now())
					rc.Close()
					if err != nil {
						return fmt.Errorf("zip %s: %w", name, err)
					}
					e.File = name
					count++
				}
			}
			if e.Status == "done" {
				done++
			} else {
				failed++
			}
			return manifest.Add(e)
		}
		// A numbered row with no result is failed when the wait ran out, or
		// when the run's rows are numbered (a Go split) yet this one is not
		// there; rows a Ruby split pushed carry no number and are all
		// recorded by jid.
		var missing []int
		numbered := false
		err := p.ledger.EachFrom(ctx, token, total, packs, func(r ledger.RowResult, absent bool) error {
			if absent {
				missing = append(missing, r.Row)
				return nil
			}
			numbered = numbered || r.Row > 0
			return add(r)
		})
		rubyDone := miss.ruby && appFiles > 0 && appFiles >= len(missing)
		if err == nil && rubyDone {
			var n int
			n, err = p.eachAppFile(token, func(path string) error { return p.zipAppFile(zw, path) })
			count += n
		}
		if err == nil && (miss.reason != "" || numbered) {
			r := ledger.RowResult{Status: "failed", Error: cmp.Or(miss.reason, "no result recorded")}
			if rubyDone {
				r.Status, r.Error = "done", rubyRowNote
			}
			for _, n := range missing {
				r.Row, r.Key = n, ledger.RowKey(n, "")
				if err = add(r); err != nil {
					break
				}
			}
		}
		if err == nil {
			err = manifest.Flush()
		}
		if err == nil {
			_, err = spool.Seek(0, io.SeekStart)
		}
		if err == nil {
			err = zw.AddManifestFrom(spool)
		}
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		pw.CloseWithError(zw.Close())
	}()
	key := contract.ResultKey(token)
	if err := p.d.Store.Put(ctx, key, pr); err != nil {
		pr.CloseWithError(err)
		return 0, fmt.Errorf("store %s: %w", key, err)
	}
	info, err := p.d.Store.Stat(ctx, key)
	if err != nil || info.Size == 0 {
		return 0, fmt.Errorf("verify %s: %v", key, errors.Join(err, errors.New("empty or missing after upload")))
	}
	if err := p.d.DB.SetCounts(ctx, token, done, failed); err != nil {
		return 0, err
	}
	return count, nil
}

// zipAppFile adds one of the app's row files under ruby/.
func (p *Pipeline) zipAppFile(zw *reportzip.Writer, path string) error {
	r, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("APP_REPORTS_DIR: %w", err)
	}
	defer r.Close()
	if _, err := zw.Add("ruby/"+filepath.Base(path), r, p.d.Now()); err != nil {
		return fmt.Errorf("zip %s: %w", path, err)
	}
	return nil
}

// stopWorker stops the token's worker; if that fails it tries again later
// with IdleShutdownJob, and if even that cannot be pushed, it marks the run
// for the force-shutdown monitor.
func (p *Pipeline) stopWorker(ctx context.Context, token, taskID, reason string) {
	p.signalTokenWorkers(ctx, token)
	if taskID == "" {
		return
	}
	err := p.d.Launcher.Stop(ctx, launcher.Task{ID: taskID}, reason)
	if err == nil {
		return
	}
	p.log.Warn("stop worker: will retry with IdleShutdownJob", "token", token, "task", taskID, "err", err)
	idle, err := toSidekiq(p.d.Client.Dialect(), contract.IdleJob(contract.DefaultQueue, token))
	if err == nil {
		idle.At = p.d.Now().Add(60 * time.Second)
		_, err = p.d.Client.Push(ctx, idle)
	}
	if err != nil {
		p.warnIf(p.d.DB.SetForceShutdown(ctx, token), "SetForceShutdown")
	}
}

// signalTokenWorkers sends Sidekiq's TERM (the Web UI's Stop button) to the
// live processes that serve only token's queue: a worker launched by
// another process (whose launcher this one cannot reach) or by hand stops
// too, and finishes what it runs first.
func (p *Pipeline) signalTokenWorkers(ctx context.Context, token string) {
	queue, err := p.tokenQueue(token)
	if err != nil {
		return
	}
	ps, err := p.d.API.Processes(ctx)
	if err != nil {
		p.log.Warn("stop token workers", "token", token, "err", err)
		return
	}
	for _, pr := range ps {
		if len(pr.Queues) != 1 || pr.Queues[0] != queue {
			continue
		}
		if err := p.d.API.Signal(ctx, pr.Identity, "TERM"); err != nil {
			p.log.Warn("stop token worker", "token", token, "identity", pr.Identity, "err", err)
		}
	}
}
