package models

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// CsvProcessingStatus is one token's run: the Rails table
// csv_processing_statuses (the progress and the guards that make its worker
// launch and its finalization happen once) with Pallarel's state from
// pallarel_runs (the fields marked "ours"). An ended run's Rails row is
// gone, as the app's finalizer deletes it; it is read from pallarel_runs.
type CsvProcessingStatus struct {
	ID         int64  `gorm:"column:id;primaryKey"`
	Token      string `gorm:"column:token"`
	TotalCount int    `gorm:"column:total_count"`
	DoneCount  int    `gorm:"column:done_count"`
	// FailedCount is ours: rows that died, so a report does not wait for
	// them until max_wait_sec (the Rails app counts only successes).
	FailedCount     int        `gorm:"column:failed_count"`
	QueueName       string     `gorm:"column:queue_name"`
	WorkerTaskArn   string     `gorm:"column:worker_task_arn"`
	WorkerStartedAt *time.Time `gorm:"column:worker_started_at;serializer:pallarel_time"`
	FinalizedAt     *time.Time `gorm:"column:finalized_at;serializer:pallarel_time"`
	ForceShutdownAt *time.Time `gorm:"column:force_shutdown_at;serializer:pallarel_time"`
	// LastError is ours: the most recent row or finalize error.
	LastError string `gorm:"column:last_error"`
	// State is ours: where the run is (RunSplitting ... RunCancelled); empty
	// for a row an older Pallarel or the Rails app made, read as processing.
	State string `gorm:"column:state"`
	// StateReason is ours: why a run failed or was cancelled, or why it is
	// stalled while it still runs.
	StateReason string `gorm:"column:state_reason"`
	// EndedAt is ours: when the run reached completed, failed or cancelled.
	EndedAt *time.Time `gorm:"column:ended_at;serializer:pallarel_time"`
	// LaunchAttempts is ours: how many times the run supervisor launched a
	// worker again for this run after the first launch.
	LaunchAttempts int `gorm:"column:launch_attempts"`
	// SourceSpec is ours: how to read the run's rows again from storage
	// (JSON written by the split), so a run outlives the Redis that held
	// its jobs.
	SourceSpec string `gorm:"column:source_spec"`
	// SplitBytesRead, SplitBytesTotal and SplitRows are ours: how far the
	// split has read the upload, so the status page can estimate the total
	// and an ETA before the split has counted every row.
	SplitBytesRead  int64     `gorm:"column:split_bytes_read"`
	SplitBytesTotal int64     `gorm:"column:split_bytes_total"`
	SplitRows       int       `gorm:"column:split_rows"`
	CreatedAt       time.Time `gorm:"column:created_at;serializer:pallarel_time"`
	UpdatedAt       time.Time `gorm:"column:updated_at;serializer:pallarel_time"`
}

// Run states (csv_processing_statuses.state). A run has ended exactly when
// finalized_at is set: EndRun sets both, so every guard that reads
// finalized_at (counts, finalize, supervisor) treats an ended run alike.
const (
	RunSplitting  = "splitting"
	RunProcessing = "processing"
	RunCompleted  = "completed"
	RunFailed     = "failed"
	RunCancelled  = "cancelled"
)

// RunState is the state, with the empty state of an older row read as
// processing (or completed once finalized).
func (c CsvProcessingStatus) RunState() string {
	switch {
	case c.State != "":
		return c.State
	case c.FinalizedAt != nil:
		return RunCompleted
	default:
		return RunProcessing
	}
}

// Ended reports whether the run reached a final state.
func (c CsvProcessingStatus) Ended() bool { return c.FinalizedAt != nil }

// TableName is the Rails table. Read runs through Store.Statuses, which
// joins Pallarel's columns and the ended runs.
func (CsvProcessingStatus) TableName() string { return statusTable }

// Finished reports whether every row is accounted for (done or failed).
func (c CsvProcessingStatus) Finished() bool {
	return c.DoneCount+c.FailedCount >= c.TotalCount
}

// CreateStatus inserts the status row for token (csv_processing_statuses,
// as SplitCsvJob does; worker_task_arn NULL). It is idempotent: when the
// run exists (a retried SplitCsvJob), live or ended, it is returned
// unchanged.
func (s *Store) CreateStatus(ctx context.Context, token, queue string, total int) (CsvProcessingStatus, error) {
	if st, err := s.StatusByToken(ctx, token); err == nil {
		return st, nil
	} else if !errors.Is(err, ErrNotFound) {
		return CsvProcessingStatus{}, fmt.Errorf("create status %s: %w", token, err)
	}
	now := s.now()
	done := 0
	row := railsStatus{Token: token, QueueName: &queue, TotalCount: &total, DoneCount: &done, CreatedAt: &now, UpdatedAt: &now}
	err := s.DB.WithContext(ctx).Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "token"}}, DoNothing: true}).Create(&row).Error
	if err != nil {
		return CsvProcessingStatus{}, fmt.Errorf("create status %s: %w", token, err)
	}
	return s.StatusByToken(ctx, token)
}

// StatusByToken loads the run, live or ended; ErrNotFound when missing.
func (s *Store) StatusByToken(ctx context.Context, token string) (CsvProcessingStatus, error) {
	var row CsvProcessingStatus
	if err := s.DB.WithContext(ctx).Table(oneStatusSQL, token, token).Take(&row).Error; err != nil {
		return CsvProcessingStatus{}, fmt.Errorf("status %s: %w", token, notFound(err))
	}
	return row, nil
}

// StatusesByTokens loads the runs of tokens, live or ended (at most one
// per token).
func (s *Store) StatusesByTokens(ctx context.Context, tokens []string) ([]CsvProcessingStatus, error) {
	var rows []CsvProcessingStatus
	if len(tokens) == 0 {
		return nil, nil
	}
	if err := s.DB.WithContext(ctx).Table(someStatusesSQL, tokens, tokens).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("statuses: %w", err)
	}
	return rows, nil
}

// RecentStatuses returns up to limit runs, live or ended, newest first
// (the status page shows 10).
func (s *Store) RecentStatuses(ctx context.Context, limit int) ([]CsvProcessingStatus, error) {
	var rows []CsvProcessingStatus
	if err := s.Statuses(ctx).Order("created_at DESC, id DESC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("recent statuses: %w", err)
	}
	return rows, nil
}

// updateStatus runs one update of token's run (plus updated_at) in a
// transaction, returning how many rows matched the extra where condition
// (which may name only csv_processing_statuses' columns). The Rails
// columns go to the live csv_processing_statuses row and Pallarel's to
// pallarel_runs; once the run has ended and its Rails row is gone, both go
// to the archived copy in pallarel_runs.
func (s *Store) updateStatus(ctx context.Context, token string, where string, fields map[string]any) (int64, error) {
	var n int64
	err := s.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var err error
		n, _, err = s.updateStatusTx(tx, token, where, fields)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("update status %s: %w", token, err)
	}
	return n, nil
}

// updateStatusTx is updateStatus inside tx; live says whether the run's
// Rails row holds it (false: archived, or no match).
func (s *Store) updateStatusTx(tx *gorm.DB, token string, where string, fields map[string]any) (n int64, live bool, err error) {
	rails, own := splitFields(fields, railsStatusColumns)
	rails["updated_at"] = s.now()
	// The first statement writes, so SQLite's deferred transaction takes
	// the write lock at once (no read-then-upgrade).
	q := tx.Table(statusTable).Where("token = ?", token)
	if where != "" {
		q = q.Where(where)
	}
	res := q.Updates(rails)
	if res.Error != nil {
		return 0, false, res.Error
	}
	if res.RowsAffected > 0 {
		return res.RowsAffected, true, updateOwn(tx, runsTable, "token", token, own)
	}
	var liveRows int64
	if err := tx.Table(statusTable).Where("token = ?", token).Count(&liveRows).Error; err != nil {
		return 0, false, err
	}
	if liveRows > 0 {
		return 0, false, nil // the condition did not hold
	}
	for k, v := range own {
		rails[k] = v
	}
	q = tx.Table(runsTable).Where("token = ? AND archived_at IS NOT NULL", token)
	if where != "" {
		q = q.Where(where)
	}
	res = q.Updates(rails)
	return res.RowsAffected, false, res.Error
}

// mustUpdateStatus is updateStatus that wants the row to exist.
func (s *Store) mustUpdateStatus(ctx context.Context, token string, fields map[string]any) error {
	n, err := s.updateStatus(ctx, token, "", fields)
	if err == nil && n == 0 {
		err = fmt.Errorf("update status %s: %w", token, ErrNotFound)
	}
	return err
}

// IncrementDone adds n to done_count in one statement (no lost updates).
// Once the run is finalized it changes nothing: the finalizer has set the
// final counts, and a row job finishing its bookkeeping late must not move
// them.
func (s *Store) IncrementDone(ctx context.Context, token string, n int) error {
	return s.incrementUnlessFinalized(ctx, token, "done_count", n)
}

func (s *Store) incrementUnlessFinalized(ctx context.Context, token, column string, n int) error {
	rows, err := s.updateStatus(ctx, token, "finalized_at IS NULL",
		map[string]any{column: gorm.Expr("COALESCE("+column+", 0) + ?", n)})
	if err != nil || rows > 0 {
		return err
	}
	_, err = s.StatusByToken(ctx, token) // finalized: fine; missing: ErrNotFound
	return err
}

// IncrementFailed adds n to failed_count in one statement.
func (s *Store) IncrementFailed(ctx context.Context, token string, n int) error {
	return s.incrementUnlessFinalized(ctx, token, "failed_count", n)
}

// SetTotal sets total_count.
func (s *Store) SetTotal(ctx context.Context, token string, total int) error {
	return s.mustUpdateStatus(ctx, token, map[string]any{"total_count": total})
}

// SetLastError records the most recent error for token.
func (s *Store) SetLastError(ctx context.Context, token, msg string) error {
	return s.mustUpdateStatus(ctx, token, map[string]any{"last_error": msg})
}

// ClaimFinalize sets finalized_at only if it is NULL, in one UPDATE, and
// reports whether this caller won. Of several finalizers racing for a token
// exactly one gets true; a missing row also gives false (already finished
// and deleted).
func (s *Store) ClaimFinalize(ctx context.Context, token string) (bool, error) {
	n, err := s.updateStatus(ctx, token, "finalized_at IS NULL", map[string]any{"finalized_at": s.now()})
	return n == 1, err
}

// ReleaseFinalize clears finalized_at after a failed finalization, so a
// retry can claim it again.
func (s *Store) ReleaseFinalize(ctx context.Context, token string) error {
	_, err := s.updateStatus(ctx, token, "", map[string]any{"finalized_at": nil})
	return err
}

// ClaimWorkerLaunch sets worker_started_at only if it is NULL and reports
// whether this caller won: the database guard that keeps one worker task
// per token.
func (s *Store) ClaimWorkerLaunch(ctx context.Context, token string) (bool, error) {
	n, err := s.updateStatus(ctx, token, "worker_started_at IS NULL", map[string]any{"worker_started_at": s.now()})
	return n == 1, err
}

// RecordWorker stores the launched task's id (ECS task ARN) and start time.
func (s *Store) RecordWorker(ctx context.Context, token, arn string, startedAt time.Time) error {
	return s.mustUpdateStatus(ctx, token, map[string]any{
		"worker_task_arn":   arn,
		"worker_started_at": startedAt.UTC().Truncate(time.Microsecond),
	})
}

// SetForceShutdown stamps force_shutdown_at: stopping the worker failed and
// ForceShutdownMonitorJob must take over.
func (s *Store) SetForceShutdown(ctx context.Context, token string) error {
	return s.mustUpdateStatus(ctx, token, map[string]any{"force_shutdown_at": s.now()})
}

// DeleteStatus removes token's run, its Rails row and Pallarel's state; a
// missing run is not an error.
func (s *Store) DeleteStatus(ctx context.Context, token string) error {
	err := s.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Table(statusTable).Where("token = ?", token).Delete(nil).Error; err != nil {
			return err
		}
		return tx.Table(runsTable).Where("token = ?", token).Delete(nil).Error
	})
	if err != nil {
		return fmt.Errorf("delete status %s: %w", token, err)
	}
	return nil
}

// SetState records a running run's state (splitting, processing) and, for a
// stalled run, why; an ended run is left alone.
func (s *Store) SetState(ctx context.Context, token, state, reason string) error {
	_, err := s.updateStatus(ctx, token, "finalized_at IS NULL", map[string]any{"state": state, "state_reason": reason})
	return err
}

// EndRun ends a run that has not ended yet: it claims finalized_at as
// ClaimFinalize does and records state (failed or cancelled) and reason,
// and moves the status row to pallarel_runs (endRun). It reports whether
// this caller ended it.
func (s *Store) EndRun(ctx context.Context, token, state, reason string) (bool, error) {
	now := s.now()
	return s.endRun(ctx, token, "finalized_at IS NULL", map[string]any{
		"finalized_at": now, "ended_at": now, "state": state, "state_reason": reason,
	})
}

// MarkEnded records the final state of a run whose finalize claim the caller
// holds (ClaimFinalize), and moves its status row to pallarel_runs.
func (s *Store) MarkEnded(ctx context.Context, token, state, reason string) error {
	n, err := s.endRun(ctx, token, "", map[string]any{"ended_at": s.now(), "state": state, "state_reason": reason})
	if err == nil && !n {
		err = fmt.Errorf("update status %s: %w", token, ErrNotFound)
	}
	return err
}

// endRun applies fields where the condition holds and, when that was the
// live Rails row, archives it: the app's FinalizeReportJob deletes its
// status row at a run's end, so its pages and monitors list only runs in
// flight, and Go reads ended runs from pallarel_runs.
func (s *Store) endRun(ctx context.Context, token, where string, fields map[string]any) (bool, error) {
	var n int64
	err := s.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var live bool
		var err error
		n, live, err = s.updateStatusTx(tx, token, where, fields)
		if err != nil || !live || n == 0 {
			return err
		}
		return s.archiveStatus(tx, token)
	})
	if err != nil {
		return false, fmt.Errorf("end run %s: %w", token, err)
	}
	return n == 1, nil
}

// UnfinishedStatuses returns up to limit runs that have not ended, oldest
// first: the run supervisor's work list.
func (s *Store) UnfinishedStatuses(ctx context.Context, limit int) ([]CsvProcessingStatus, error) {
	var rows []CsvProcessingStatus
	if err := s.Statuses(ctx).Where("finalized_at IS NULL").Order("id").Limit(limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("unfinished statuses: %w", err)
	}
	return rows, nil
}

// NoteLaunchAttempt counts one more relaunch of token's worker and returns
// the new count.
func (s *Store) NoteLaunchAttempt(ctx context.Context, token string) (int, error) {
	if _, err := s.updateStatus(ctx, token, "", map[string]any{"launch_attempts": gorm.Expr("COALESCE(launch_attempts, 0) + 1")}); err != nil {
		return 0, err
	}
	st, err := s.StatusByToken(ctx, token)
	return st.LaunchAttempts, err
}

// SetSourceSpec records how to re-read the run's rows from storage.
func (s *Store) SetSourceSpec(ctx context.Context, token, spec string) error {
	return s.mustUpdateStatus(ctx, token, map[string]any{"source_spec": spec})
}
