package models

import (
	"context"
	"fmt"
)

// The queries of the server's pages, health check and metrics, so the
// server asks for data instead of spelling SQL.

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.DB.DB()
	if err != nil {
		return fmt.Errorf("ping the database: %w", err)
	}
	return sqlDB.PingContext(ctx)
}

// OpenStatuses lists the status rows of runs not finalized, newest first,
// at most limit.
func (s *Store) OpenStatuses(ctx context.Context, limit int) ([]CsvProcessingStatus, error) {
	var rows []CsvProcessingStatus
	if err := s.Statuses(ctx).Where("finalized_at IS NULL").Order("id DESC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("open statuses: %w", err)
	}
	return rows, nil
}

// ReportsWithToken lists the reports that started a run (they have a
// token), newest first, of one status unless status is nil, limit of them
// from offset.
func (s *Store) ReportsWithToken(ctx context.Context, status *ReportStatus, offset, limit int) ([]ClientReport, error) {
	q := s.Reports(ctx).Where("token IS NOT NULL AND token <> ''")
	if status != nil {
		q = q.Where("status = ?", int(*status))
	}
	var reps []ClientReport
	if err := q.Order("client_reports.id DESC").Offset(offset).Limit(limit).Find(&reps).Error; err != nil {
		return nil, fmt.Errorf("reports with a token: %w", err)
	}
	return reps, nil
}
