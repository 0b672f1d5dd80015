package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/csvrows"
	"github.com/pallarel/pallarel/ledger"
	"github.com/pallarel/pallarel/sidekiq"
)

// openUpload reads the run's stored upload as the split read it.
func (r *Retrier) openUpload(ctx context.Context, spec contract.RunSpec) (*csvrows.Reader, io.Closer, error) {
	rc, err := r.p.Store.Open(ctx, spec.SourceKey)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", spec.SourceKey, err)
	}
	rows, err := csvrows.NewReader(rc, csvrows.Options{Encoding: spec.Encoding})
	if err != nil {
		rc.Close()
		return nil, nil, fmt.Errorf("read %s: %w", spec.SourceKey, err)
	}
	return rows, rc, nil
}

// countRunnable reads the upload up to the last row in want and counts the
// rows of want that parse, which a retry can run again (a row the CSV
// cannot parse fails again whatever is retried). It reads as pushRows does.
func (r *Retrier) countRunnable(ctx context.Context, spec contract.RunSpec, want map[int]string) (int, error) {
	last := 0
	for n := range want {
		last = max(last, n)
	}
	rows, closer, err := r.openUpload(ctx, spec)
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	n := 0
	for {
		row, err := rows.Next()
		if errors.Is(err, io.EOF) || (err == nil && row.Number > last) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read %s: %w", spec.SourceKey, err)
		}
		if _, ok := want[row.Number]; ok && row.Err == nil {
			n++
		}
	}
}

// pushRows reads the upload again and pushes the rows whose numbers are in
// want, as the split pushed them; a row the CSV cannot parse is recorded
// failed again at once, and so is a row the upload no longer has.
func (r *Retrier) pushRows(ctx context.Context, token, queue string, spec contract.RunSpec, want map[int]string) (int, error) {
	rows, closer, err := r.openUpload(ctx, spec)
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	build, err := r.p.RowJobs(ctx, token, queue, spec, rows)
	if err != nil {
		return 0, err
	}
	last := slices.Max(mapKeys(want))
	batch := make([]*sidekiq.Job, 0, r.p.BatchSize)
	pushed := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if _, err := r.p.Client.PushBulk(ctx, batch); err != nil {
			return fmt.Errorf("push rows: %w", err)
		}
		pushed += len(batch)
		batch = batch[:0]
		return nil
	}
	for {
		row, err := rows.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return pushed, fmt.Errorf("read %s: %w", spec.SourceKey, err)
		}
		if row.Number > last {
			break
		}
		if _, ok := want[row.Number]; !ok {
			continue
		}
		delete(want, row.Number)
		if row.Err != nil {
			if err := r.failAgain(ctx, token, row.Number, row.ErrorText()); err != nil {
				return pushed, err
			}
			continue
		}
		j, err := build(row)
		if err != nil {
			return pushed, err
		}
		batch = append(batch, j)
		if len(batch) >= r.p.BatchSize {
			if err := flush(); err != nil {
				return pushed, err
			}
		}
	}
	if err := flush(); err != nil {
		return pushed, err
	}
	// Rows the upload no longer has (it changed?) stay failed, as before.
	for n, msg := range want {
		if err := r.failAgain(ctx, token, n, msg); err != nil {
			return pushed, err
		}
	}
	return pushed, nil
}

// failAgain records row n failed with msg, and counts it once.
func (r *Retrier) failAgain(ctx context.Context, token string, n int, msg string) error {
	isNew, _, err := r.p.Packer.Commit(ctx, token, ledger.RowResult{Row: n, Key: ledger.RowKey(n, ""), Status: "failed", Error: msg}, nil)
	if err != nil {
		return err
	}
	if isNew {
		r.warnIf(r.p.Runs.IncrementFailed(ctx, token, 1), "count a failed row")
	}
	return nil
}

func mapKeys(m map[int]string) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
