package models

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// CsvProcessingStatus is a row of the Rails table csv_processing_statuses:
// the progress of one token's run and the guards that make its worker launch
// and its finalization happen once.
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

// TableName is the Rails table.
func (CsvProcessingStatus) TableName() string { return "csv_processing_statuses" }

// Finished reports whether every row is accounted for (done or failed).
func (c CsvProcessingStatus) Finished() bool {
	return c.DoneCount+c.FailedCount >= c.TotalCount
}

// CreateStatus inserts the status row for token. It is idempotent: when the
// row exists (a retried SplitCsvJob) the existing row is returned unchanged.
func (s *Store) CreateStatus(ctx context.Context, token, queue string, total int) (CsvProcessingStatus, error) {
	now := s.now()
	row := CsvProcessingStatus{Token: token, QueueName: queue, TotalCount: total, CreatedAt: now, UpdatedAt: now}
	err := s.DB.WithContext(ctx).Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "token"}}, DoNothing: true}).Create(&row).Error
	if err != nil {
		return CsvProcessingStatus{}, fmt.Errorf("create status %s: %w", token, err)
	}
	return s.StatusByToken(ctx, token)
}

// StatusByToken loads the status row; ErrNotFound when missing.
func (s *Store) StatusByToken(ctx context.Context, token string) (CsvProcessingStatus, error) {
	var row CsvProcessingStatus
	if err := s.DB.WithContext(ctx).Where("token = ?", token).Take(&row).Error; err != nil {
		return CsvProcessingStatus{}, fmt.Errorf("status %s: %w", token, notFound(err))
	}
	return row, nil
}

// RecentStatuses returns up to limit rows, newest first (the status page
// shows 10).
func (s *Store) RecentStatuses(ctx context.Context, limit int) ([]CsvProcessingStatus, error) {
	var rows []CsvProcessingStatus
	if err := s.DB.WithContext(ctx).Order("created_at DESC, id DESC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("recent statuses: %w", err)
	}
	return rows, nil
}

// updateStatus runs one UPDATE on token's row (plus updated_at), returning
// how many rows matched the extra where condition.
func (s *Store) updateStatus(ctx context.Context, token string, where string, fields map[string]any) (int64, error) {
	fields["updated_at"] = s.now()
	q := s.DB.WithContext(ctx).Model(&CsvProcessingStatus{}).Where("token = ?", token)
	if where != "" {
		q = q.Where(where)
	}
	res := q.Updates(fields)
	if res.Error != nil {
		return 0, fmt.Errorf("update status %s: %w", token, res.Error)
	}
	return res.RowsAffected, nil
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

// DeleteStatus removes token's row; a missing row is not an error.
func (s *Store) DeleteStatus(ctx context.Context, token string) error {
	if err := s.DB.WithContext(ctx).Where("token = ?", token).Delete(&CsvProcessingStatus{}).Error; err != nil {
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
// ClaimFinalize does and records state (failed or cancelled) and reason. It
// reports whether this caller ended it.
func (s *Store) EndRun(ctx context.Context, token, state, reason string) (bool, error) {
	now := s.now()
	n, err := s.updateStatus(ctx, token, "finalized_at IS NULL", map[string]any{
		"finalized_at": now, "ended_at": now, "state": state, "state_reason": reason,
	})
	return n == 1, err
}

// MarkEnded records the final state of a run whose finalize claim the caller
// holds (ClaimFinalize).
func (s *Store) MarkEnded(ctx context.Context, token, state, reason string) error {
	return s.mustUpdateStatus(ctx, token, map[string]any{"ended_at": s.now(), "state": state, "state_reason": reason})
}

// UnfinishedStatuses returns up to limit runs that have not ended, oldest
// first: the run supervisor's work list.
func (s *Store) UnfinishedStatuses(ctx context.Context, limit int) ([]CsvProcessingStatus, error) {
	var rows []CsvProcessingStatus
	if err := s.DB.WithContext(ctx).Where("finalized_at IS NULL").Order("id").Limit(limit).Find(&rows).Error; err != nil {
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
