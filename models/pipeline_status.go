package models

import "context"

// ReleaseWorkerLaunch clears the launch claim after a failed launch, so a
// later attempt may launch again. A recorded task is left alone.
func (s *Store) ReleaseWorkerLaunch(ctx context.Context, token string) error {
	_, err := s.updateStatus(ctx, token, "worker_task_arn IS NULL OR worker_task_arn = ''", map[string]any{"worker_started_at": nil})
	return err
}

// SetCounts stores the final done and failed counts, taken from the row
// ledger, which counts each row once whatever ran twice.
func (s *Store) SetCounts(ctx context.Context, token string, done, failed int) error {
	return s.mustUpdateStatus(ctx, token, map[string]any{"done_count": done, "failed_count": failed})
}

// ClearForceShutdown clears force_shutdown_at once the worker was stopped.
func (s *Store) ClearForceShutdown(ctx context.Context, token string) error {
	return s.mustUpdateStatus(ctx, token, map[string]any{"force_shutdown_at": nil})
}

// ClearWorkerTask forgets the recorded worker task once it was stopped, so
// monitors do not stop it again (NULL, as the app writes it).
func (s *Store) ClearWorkerTask(ctx context.Context, token string) error {
	return s.mustUpdateStatus(ctx, token, map[string]any{"worker_task_arn": ""})
}
