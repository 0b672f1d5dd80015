package models

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

// ReportType is the Rails enum client_reports.report_type.
type ReportType int

// Report types as Rails' enum maps them.
const (
	ReportTypeXLSX ReportType = 0
	ReportTypePDF  ReportType = 1
	// ReportTypeText is ours, beyond Rails' enum (xlsx and pdf): a plain
	// text file per row. Rails reads the unknown value as nil rather than
	// failing.
	ReportTypeText ReportType = 2
)

// SplitType is the type argument of SplitCsvJob and the row jobs for t
// ("xlsx", "pdf", "text"); any other value is "xlsx", SplitCsvJob's
// default.
func (t ReportType) SplitType() string {
	switch t {
	case ReportTypePDF:
		return "pdf"
	case ReportTypeText:
		return "text"
	}
	return "xlsx"
}

// String returns the Rails enum name ("xlsx", "pdf").
func (t ReportType) String() string {
	switch t {
	case ReportTypeXLSX:
		return "xlsx"
	case ReportTypePDF:
		return "pdf"
	}
	return fmt.Sprintf("ReportType(%d)", int(t))
}

// ErrBadEnum is returned (wrapped) by the enum parsers.
var ErrBadEnum = errors.New("unknown enum value")

// ParseReportType parses "xlsx" or "pdf" (any case).
func ParseReportType(s string) (ReportType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "xlsx":
		return ReportTypeXLSX, nil
	case "pdf":
		return ReportTypePDF, nil
	}
	return 0, fmt.Errorf("report type %q: %w (want xlsx or pdf)", s, ErrBadEnum)
}

// MarshalText implements encoding.TextMarshaler.
func (t ReportType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *ReportType) UnmarshalText(b []byte) error {
	v, err := ParseReportType(string(b))
	if err == nil {
		*t = v
	}
	return err
}

// ReportStatus is the Rails enum client_reports.status.
type ReportStatus int

// Report statuses as Rails' enum maps them.
const (
	ReportPending    ReportStatus = 0
	ReportProcessing ReportStatus = 1
	ReportCompleted  ReportStatus = 2
	ReportFailed     ReportStatus = 3
)

var reportStatusNames = [...]string{"pending", "processing", "completed", "failed"}

// String returns the Rails enum name ("pending", "processing", ...).
func (s ReportStatus) String() string {
	if s >= 0 && int(s) < len(reportStatusNames) {
		return reportStatusNames[s]
	}
	return fmt.Sprintf("ReportStatus(%d)", int(s))
}

// ParseReportStatus parses a Rails enum name (any case).
func ParseReportStatus(s string) (ReportStatus, error) {
	want := strings.ToLower(strings.TrimSpace(s))
	for i, name := range reportStatusNames {
		if name == want {
			return ReportStatus(i), nil
		}
	}
	return 0, fmt.Errorf("report status %q: %w (want pending, processing, completed or failed)", s, ErrBadEnum)
}

// MarshalText implements encoding.TextMarshaler.
func (s ReportStatus) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *ReportStatus) UnmarshalText(b []byte) error {
	v, err := ParseReportStatus(string(b))
	if err == nil {
		*s = v
	}
	return err
}

// ClientReport is a row of the Rails table client_reports (one uploaded
// CSV and the report built from it) with Pallarel's columns (the fields
// marked "ours") from pallarel_reports.
type ClientReport struct {
	ID           int64  `gorm:"column:id;primaryKey"`
	SecurityHash string `gorm:"column:security_hash"`
	// DeletedAt is Rails' soft-delete marker; a plain pointer so gorm does
	// not add its own soft-delete scoping.
	DeletedAt  *time.Time   `gorm:"column:deleted_at;serializer:pallarel_time"`
	ReportType ReportType   `gorm:"column:report_type"`
	Count      int          `gorm:"column:count"`
	File       string       `gorm:"column:file"`
	Status     ReportStatus `gorm:"column:status"`
	Token      string       `gorm:"column:token"`
	// ErrorMessage is ours: why the report failed.
	ErrorMessage string `gorm:"column:error_message"`
	// SourceKey is ours: the storage key of the uploaded CSV.
	SourceKey string `gorm:"column:source_key"`
	// SourceName is ours: the uploaded file's name as the browser sent it
	// (shown in the runs list).
	SourceName string `gorm:"column:source_name"`
	// ExpiredAt is ours: when retention deleted the run's files; the
	// status pages say so instead of offering a dead download.
	ExpiredAt *time.Time `gorm:"column:expired_at;serializer:pallarel_time"`
	// WebhookURL is ours: called once when the run ends (see run/webhook).
	WebhookURL string    `gorm:"column:webhook_url"`
	CreatedAt  time.Time `gorm:"column:created_at;serializer:pallarel_time"`
	UpdatedAt  time.Time `gorm:"column:updated_at;serializer:pallarel_time"`
}

// TableName is the Rails table. Read reports through Store.Reports,
// which joins Pallarel's columns (pallarel_reports).
func (ClientReport) TableName() string { return reportTable }

// CreateReport inserts r, setting its ID and timestamps: the Rails columns
// in client_reports, Pallarel's (when set) in pallarel_reports.
func (s *Store) CreateReport(ctx context.Context, r *ClientReport) error {
	now := s.now()
	r.CreatedAt, r.UpdatedAt = now, now
	err := s.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Omit(ownReportColumns...).Create(r).Error; err != nil {
			return err
		}
		own := map[string]any{}
		for col, v := range map[string]string{"error_message": r.ErrorMessage, "source_key": r.SourceKey, "source_name": r.SourceName, "webhook_url": r.WebhookURL} {
			if v != "" {
				own[col] = v
			}
		}
		if r.ExpiredAt != nil {
			own["expired_at"] = r.ExpiredAt.UTC().Truncate(time.Microsecond)
		}
		return updateOwn(tx, reportsTable, "report_id", r.ID, own)
	})
	if err != nil {
		return fmt.Errorf("create client report: %w", err)
	}
	return nil
}

// ReportByID loads one report; ErrNotFound when missing.
func (s *Store) ReportByID(ctx context.Context, id int64) (ClientReport, error) {
	var r ClientReport
	if err := s.Reports(ctx).Where("client_reports.id = ?", id).Take(&r).Error; err != nil {
		return ClientReport{}, fmt.Errorf("client report %d: %w", id, notFound(err))
	}
	return r, nil
}

// ReportByToken loads the newest report with token; ErrNotFound when none.
func (s *Store) ReportByToken(ctx context.Context, token string) (ClientReport, error) {
	var r ClientReport
	if err := s.Reports(ctx).Where("token = ?", token).Order("client_reports.id DESC").Take(&r).Error; err != nil {
		return ClientReport{}, fmt.Errorf("client report for token %s: %w", token, notFound(err))
	}
	return r, nil
}

// updateReport sets fields (plus updated_at) on report id; ErrNotFound when missing.
func (s *Store) updateReport(ctx context.Context, id int64, fields map[string]any) error {
	fields["updated_at"] = s.now()
	return s.UpdateReportColumns(ctx, id, fields)
}

// UpdateReportColumns sets columns of report id, the Rails ones in
// client_reports and Pallarel's in pallarel_reports, without touching
// updated_at unless fields name it (retention goes by that age);
// ErrNotFound when the report is missing.
func (s *Store) UpdateReportColumns(ctx context.Context, id int64, fields map[string]any) error {
	rails, own := splitFields(fields, railsReportColumns)
	err := s.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if len(rails) == 0 {
			rails["id"] = id // an UPDATE that proves the row exists
		}
		res := tx.Table(reportTable).Where("id = ?", id).Updates(rails)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrNotFound
		}
		return updateOwn(tx, reportsTable, "report_id", id, own)
	})
	if err != nil {
		return fmt.Errorf("update client report %d: %w", id, err)
	}
	return nil
}

// MarkReportProcessing sets status processing and the token, as SplitCsvJob does.
func (s *Store) MarkReportProcessing(ctx context.Context, id int64, token string) error {
	return s.updateReport(ctx, id, map[string]any{"status": ReportProcessing, "token": token})
}

// MarkReportCompleted sets status completed, the result file (storage key or
// local path) and the number of files zipped, as FinalizeReportJob does.
func (s *Store) MarkReportCompleted(ctx context.Context, id int64, file string, count int) error {
	return s.updateReport(ctx, id, map[string]any{"status": ReportCompleted, "file": file, "count": count})
}

// MarkReportFailed sets status failed and records why in error_message.
func (s *Store) MarkReportFailed(ctx context.Context, id int64, msg string) error {
	return s.updateReport(ctx, id, map[string]any{"status": ReportFailed, "error_message": msg})
}

// SetReportSource records the storage key of the uploaded CSV.
func (s *Store) SetReportSource(ctx context.Context, id int64, key string) error {
	return s.updateReport(ctx, id, map[string]any{"source_key": key})
}

// PendingReports returns up to limit reports still pending (their split
// never started) that were created before olderThan, oldest first.
func (s *Store) PendingReports(ctx context.Context, olderThan time.Time, limit int) ([]ClientReport, error) {
	var rows []ClientReport
	err := s.Reports(ctx).Where("status = ? AND created_at < ? AND deleted_at IS NULL", ReportPending, olderThan.UTC()).
		Order("client_reports.id").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("pending reports: %w", err)
	}
	return rows, nil
}
