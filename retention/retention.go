// Package retention deletes what a run leaves behind once it is old: the
// uploaded CSV and template (personal data) after Uploads, the report ZIP
// after Results, and the run itself after Runs. Only ended runs (completed
// or failed) are touched, so a long run never loses its input.
//
// What it does to the Rails tables is what Rails would see as normal:
// client_reports.source_key is cleared once the upload is gone, expired_at
// is set once the result is gone (the status pages say "expired" and the
// download answers 410), and an old run is soft-deleted (deleted_at, Rails'
// own marker) while its csv_processing_statuses row is removed.
package retention

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/storage"
)

// Config says how long an ended run's parts are kept. Zero values take
// the defaults.
type Config struct {
	Uploads time.Duration // default 7 days
	Results time.Duration // default 30 days
	Runs    time.Duration // default 90 days
	// Interval is how often Start sweeps. Default 1 hour.
	Interval time.Duration
	// Batch is how many runs one query handles. Default 100.
	Batch int
}

// Sweeper applies a Config. Build it with New.
type Sweeper struct {
	db    *models.Store
	store storage.Store
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
}

// New checks the parts and fills defaults; now may be nil (time.Now).
func New(db *models.Store, store storage.Store, cfg Config, log *slog.Logger, now func() time.Time) (*Sweeper, error) {
	if db == nil || db.DB == nil || store == nil {
		return nil, errors.New("retention: database and storage are required")
	}
	cfg.Uploads = cmp.Or(cfg.Uploads, 7*24*time.Hour)
	cfg.Results = cmp.Or(cfg.Results, 30*24*time.Hour)
	cfg.Runs = cmp.Or(cfg.Runs, 90*24*time.Hour)
	cfg.Interval = cmp.Or(cfg.Interval, time.Hour)
	cfg.Batch = cmp.Or(cfg.Batch, 100)
	if now == nil {
		now = time.Now
	}
	return &Sweeper{db: db, store: store, cfg: cfg, log: cmp.Or(log, slog.Default()), now: now}, nil
}

// Start sweeps now and then every Interval until ctx ends. Errors are
// logged; the next sweep tries again.
func (s *Sweeper) Start(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if res, err := s.Sweep(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("retention sweep", "err", err)
		} else if res != (Result{}) {
			s.log.Info("retention sweep", "uploads", res.Uploads, "results", res.Results, "runs", res.Runs)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Result counts what one sweep removed.
type Result struct{ Uploads, Results, Runs int }

// ended are the client_reports statuses of a run that will not change.
var ended = []int{int(models.ReportCompleted), int(models.ReportFailed)}

// Sweep runs one pass over every kind.
func (s *Sweeper) Sweep(ctx context.Context) (Result, error) {
	var res Result
	var err error
	if res.Uploads, err = s.sweepUploads(ctx); err != nil {
		return res, err
	}
	if res.Results, err = s.sweepResults(ctx); err != nil {
		return res, err
	}
	res.Runs, err = s.sweepRuns(ctx)
	return res, err
}

// oldEnded lists up to Batch ended runs last updated before cutoff that
// match where.
func (s *Sweeper) oldEnded(ctx context.Context, cutoff time.Time, where string) ([]models.ClientReport, error) {
	var reps []models.ClientReport
	err := s.db.Reports(ctx).
		Where("token IS NOT NULL AND token <> '' AND status IN ? AND updated_at < ?", ended, cutoff.UTC()).
		Where(where).Order("client_reports.id").Limit(s.cfg.Batch).Find(&reps).Error
	if err != nil {
		return nil, fmt.Errorf("retention: list runs: %w", err)
	}
	return reps, nil
}

func (s *Sweeper) sweepUploads(ctx context.Context) (int, error) {
	n := 0
	for {
		reps, err := s.oldEnded(ctx, s.now().Add(-s.cfg.Uploads), "source_key IS NOT NULL AND source_key <> ''")
		if err != nil || len(reps) == 0 {
			return n, err
		}
		for _, r := range reps {
			for _, k := range []string{contract.UploadKey(r.Token), contract.TemplateKey(r.Token)} {
				if err := s.store.Delete(ctx, k); err != nil && !errors.Is(err, storage.ErrNotExist) {
					return n, fmt.Errorf("retention: delete %s: %w", k, err)
				}
			}
			if err := s.update(ctx, r.ID, map[string]any{"source_key": ""}); err != nil {
				return n, err
			}
			n++
		}
	}
}

func (s *Sweeper) sweepResults(ctx context.Context) (int, error) {
	n := 0
	for {
		reps, err := s.oldEnded(ctx, s.now().Add(-s.cfg.Results), "expired_at IS NULL")
		if err != nil || len(reps) == 0 {
			return n, err
		}
		for _, r := range reps {
			if err := s.store.Delete(ctx, contract.ResultKey(r.Token)); err != nil && !errors.Is(err, storage.ErrNotExist) {
				return n, fmt.Errorf("retention: delete result of %s: %w", r.Token, err)
			}
			if err := s.store.DeletePrefix(ctx, contract.RowKeyPrefix(r.Token)); err != nil {
				return n, fmt.Errorf("retention: delete row files of %s: %w", r.Token, err)
			}
			now := s.now().UTC().Truncate(time.Microsecond)
			if err := s.update(ctx, r.ID, map[string]any{"expired_at": &now}); err != nil {
				return n, err
			}
			n++
		}
	}
}

func (s *Sweeper) sweepRuns(ctx context.Context) (int, error) {
	n := 0
	for {
		reps, err := s.oldEnded(ctx, s.now().Add(-s.cfg.Runs), "deleted_at IS NULL")
		if err != nil || len(reps) == 0 {
			return n, err
		}
		for _, r := range reps {
			if err := s.db.DeleteStatus(ctx, r.Token); err != nil {
				return n, fmt.Errorf("retention: %w", err)
			}
			now := s.now().UTC().Truncate(time.Microsecond)
			if err := s.update(ctx, r.ID, map[string]any{"deleted_at": &now, "source_name": "", "error_message": ""}); err != nil {
				return n, err
			}
			n++
		}
	}
}

// update changes columns of one report without touching updated_at (the
// age the sweeps go by).
func (s *Sweeper) update(ctx context.Context, id int64, cols map[string]any) error {
	if err := s.db.UpdateReportColumns(ctx, id, cols); err != nil {
		return fmt.Errorf("retention: update report %d: %w", id, err)
	}
	return nil
}
