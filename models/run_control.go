package models

import (
	"context"
	"fmt"

	"gorm.io/gorm"
)

// SetSplitProgress records how far the split has read token's upload
// (bytesRead of bytesTotal) and how many data rows it has seen, while the
// run has not ended. The status page estimates the total from it before
// the split has counted every row.
func (s *Store) SetSplitProgress(ctx context.Context, token string, bytesRead, bytesTotal int64, rows int) error {
	_, err := s.updateStatus(ctx, token, "finalized_at IS NULL", map[string]any{
		"split_bytes_read": bytesRead, "split_bytes_total": bytesTotal, "split_rows": rows,
	})
	return err
}

// ReopenRun reopens a completed run so that some of its rows can run again
// (retry of failed rows): it clears finalized_at, ended_at, the state (read
// as processing until the run ends again) and its reason, sets the counts
// to done and failed, and forgets the worker so a new one can be launched.
// The run's status row comes back to csv_processing_statuses (with its
// old id), where a Ruby row job counts done_count. Only a run that ended
// completed is reopened; it reports whether this caller reopened it.
func (s *Store) ReopenRun(ctx context.Context, token string, done, failed int) (bool, error) {
	var reopened bool
	err := s.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// The status table first, as every other update of a run (so two
		// of them cannot deadlock), with a write (so SQLite's deferred
		// transaction holds the write lock from here). A live row means
		// the run has not ended: nothing to reopen.
		live := tx.Exec("UPDATE csv_processing_statuses SET updated_at = updated_at WHERE token = ?", token)
		if live.Error != nil || live.RowsAffected > 0 {
			return live.Error
		}
		// A finalizer that did not record "completed" leaves the running
		// state it found: any ended run that did not fail and was not
		// cancelled.
		own := "state IS NULL OR state NOT IN ('" + RunFailed + "', '" + RunCancelled + "')"
		res := tx.Table(runsTable).Where("token = ? AND archived_at IS NOT NULL AND finalized_at IS NOT NULL", token).Where(own).
			Updates(map[string]any{"ended_at": nil, "state": "", "state_reason": "", "failed_count": failed, "last_error": "", "archived_at": nil})
		if res.Error != nil || res.RowsAffected == 0 {
			return res.Error
		}
		var row railsStatus
		if err := tx.Table(runsTable).Where("token = ?", token).Take(&row).Error; err != nil {
			return err
		}
		now := s.now()
		row.DoneCount, row.FinalizedAt, row.WorkerStartedAt, row.WorkerTaskArn, row.ForceShutdownAt, row.UpdatedAt = &done, nil, nil, nil, nil, &now
		if row.CreatedAt == nil {
			row.CreatedAt = &now
		}
		if row.TotalCount == nil {
			zero := 0
			row.TotalCount = &zero
		}
		if err := tx.Create(&row).Error; err != nil {
			return fmt.Errorf("restore status row: %w", err)
		}
		reopened = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("reopen run %s: %w", token, err)
	}
	return reopened, nil
}

// SetReportWebhook records the URL to call when the report's run ends.
func (s *Store) SetReportWebhook(ctx context.Context, id int64, url string) error {
	if err := s.updateReport(ctx, id, map[string]any{"webhook_url": url}); err != nil {
		return fmt.Errorf("webhook url: %w", err)
	}
	return nil
}
