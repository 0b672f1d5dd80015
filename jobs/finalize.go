package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/reportzip"
	"github.com/pallarel/pallarel/sidekiq"
)

// ResultKey is where a token's ZIP is stored, locally or in S3, as the Rails
// app names it: reports/<token>.zip.
func ResultKey(token string) string { return "reports/" + token + ".zip" }

// finalizeJob builds Report::FinalizeReportJob with the Rails argument
// order on the token's queue: [path, type, report_id, token, interval_sec,
// max_wait_sec, started_at], retry 3.
func finalizeJob(queue, dir, typ string, reportID int64, token string, interval, maxWait int, startedAt int64) (*sidekiq.Job, error) {
	j, err := sidekiq.NewJob(FinalizeClass, dir, typ, reportID, token, interval, maxWait, startedAt)
	if err != nil {
		return nil, err
	}
	j.Queue, j.Retry = queue, json.RawMessage("3")
	return j, nil
}

// newFinalizeJob is finalizeJob with the pipeline's interval and maximum
// wait, started now.
func (p *Pipeline) newFinalizeJob(queue, typ string, reportID int64, token string) (*sidekiq.Job, error) {
	return finalizeJob(queue, "/tmp/reports/"+token, typ, reportID, token,
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
	count, err := p.finalize(ctx, token, status.TotalCount, timedOut)
	if err != nil {
		// The report stays processing while retries remain; jobDied marks
		// it failed when they are spent.
		log.Error("finalize failed", "err", err)
		_ = p.d.Store.Delete(context.WithoutCancel(ctx), ResultKey(token))
		_ = p.d.DB.SetLastError(ctx, token, err.Error())
		_ = p.d.DB.ReleaseFinalize(ctx, token)
		return err
	}
	if err := p.d.DB.MarkReportCompleted(ctx, reportID, ResultKey(token), count); err != nil {
		_ = p.d.DB.ReleaseFinalize(ctx, token)
		return fmt.Errorf("finalize %s: %w", token, err)
	}
	if n, err := p.d.API.PurgeQueue(ctx, queue); err != nil {
		log.Warn("clean token queue", "err", err)
	} else if n > 0 {
		log.Info("removed leftover jobs of the token", "jobs", n)
	}
	if err := p.d.Store.DeletePrefix(ctx, RowKeyPrefix(token)); err != nil {
		log.Warn("delete row files", "err", err)
	}
	_ = p.ledger.Expire(ctx, token, 7*24*time.Hour)
	p.stopWorker(ctx, token, status.WorkerTaskArn, "report "+token+" finished")
	log.Info("report finished", "files", count, "result", ResultKey(token))
	return nil
}

// finalize writes the ZIP and returns the number of row files in it.
func (p *Pipeline) finalize(ctx context.Context, token string, total int, timedOut bool) (int, error) {
	results, err := p.ledger.Results(ctx, token)
	if err != nil {
		return 0, err
	}
	seen := make(map[int]bool, len(results))
	done, failed := 0, 0
	for _, r := range results {
		if r.Row > 0 {
			seen[r.Row] = true
		}
	}
	// Rows with no result when the wait ran out are failed rows.
	if timedOut {
		for n := 1; n <= total; n++ {
			if !seen[n] {
				results = append(results, RowResult{Row: n, Key: RowKey(n, ""), Status: "failed", Error: "no result before max_wait_sec"})
			}
		}
	}
	pr, pw := io.Pipe()
	count := 0
	go func() {
		zw := reportzip.NewWriter(pw)
		var manifest []reportzip.ManifestEntry
		for _, r := range results {
			e := reportzip.ManifestEntry{Row: r.Row, Status: r.Status, Error: r.Error}
			if r.Status == "done" && r.File != "" {
				name := path.Base(r.File)
				rc, err := p.d.Store.Open(ctx, r.File)
				if err != nil {
					e.Status, e.Error = "failed", fmt.Sprintf("row file missing: %v", err)
				} else {
					_, err = zw.Add(name, rc, p.d.Now())
					rc.Close()
					if err != nil {
						pw.CloseWithError(fmt.Errorf("zip %s: %w", name, err))
						return
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
			manifest = append(manifest, e)
		}
		if err := zw.AddManifest(manifest); err != nil {
			pw.CloseWithError(err)
			return
		}
		pw.CloseWithError(zw.Close())
	}()
	key := ResultKey(token)
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

// stopWorker stops the token's worker; if that fails it tries again later
// with IdleShutdownJob, and if even that cannot be pushed, it marks the run
// for the force-shutdown monitor.
func (p *Pipeline) stopWorker(ctx context.Context, token, taskID, reason string) {
	if taskID == "" {
		return
	}
	err := p.d.Launcher.Stop(ctx, launcher.Task{ID: taskID}, reason)
	if err == nil {
		return
	}
	p.log.Warn("stop worker: will retry with IdleShutdownJob", "token", token, "task", taskID, "err", err)
	idle, err := sidekiq.NewActiveJob(p.d.Client.Dialect(), IdleClass, "default", token)
	if err == nil {
		idle.At = p.d.Now().Add(60 * time.Second)
		_, err = p.d.Client.Push(ctx, idle)
	}
	if err != nil {
		_ = p.d.DB.SetForceShutdown(ctx, token)
	}
}
