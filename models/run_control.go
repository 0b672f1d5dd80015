package models

import (
	"context"
	"fmt"
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
// Only a run that ended completed is reopened; it reports whether this
// caller reopened it.
func (s *Store) ReopenRun(ctx context.Context, token string, done, failed int) (bool, error) {
	// A finalizer that did not record "completed" leaves the running state
	// it found: any ended run that did not fail and was not cancelled.
	n, err := s.updateStatus(ctx, token, "finalized_at IS NOT NULL AND (state IS NULL OR state NOT IN ('"+RunFailed+"', '"+RunCancelled+"'))", map[string]any{
		"finalized_at": nil, "ended_at": nil, "state": "", "state_reason": "",
		"done_count": done, "failed_count": failed, "last_error": "",
		"worker_started_at": nil, "worker_task_arn": "", "force_shutdown_at": nil,
	})
	return n == 1, err
}

// SetReportWebhook records the URL to call when the report's run ends.
func (s *Store) SetReportWebhook(ctx context.Context, id int64, url string) error {
	if err := s.updateReport(ctx, id, map[string]any{"webhook_url": url}); err != nil {
		return fmt.Errorf("webhook url: %w", err)
	}
	return nil
}
