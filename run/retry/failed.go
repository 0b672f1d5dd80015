package retry

import (
	"context"
	"errors"
	"fmt"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/reportzip"
	"github.com/pallarel/pallarel/storage"
)

// FailedRows lists the failed rows of token, limit of them from offset, in
// row order: from the manifest of the run's ZIP once it has one, else from
// the row ledger.
func (r *Retrier) FailedRows(ctx context.Context, token string, offset, limit int) (contract.FailedPage, error) {
	if _, err := r.p.Queue(token); err != nil {
		return contract.FailedPage{}, err
	}
	offset, limit = max(offset, 0), max(limit, 1)
	page := contract.FailedPage{Rows: []contract.FailedRow{}, Source: "none"}
	st, err := r.p.Runs.StatusByToken(ctx, token)
	if err == nil && st.Ended() {
		z, err := openResult(ctx, r.p.Store, token)
		switch {
		case err == nil:
			defer z.Close()
			page.Source = "manifest"
			err = z.EachManifest(func(m reportzip.ManifestEntry) error {
				if m.Status == reportzip.StatusDone {
					return nil
				}
				if page.Total >= offset && len(page.Rows) < limit {
					page.Rows = append(page.Rows, contract.FailedRow{Row: m.Row, Error: m.Error})
				}
				page.Total++
				return nil
			})
			if err != nil {
				return contract.FailedPage{}, fmt.Errorf("failed rows of %s: %w", token, err)
			}
			return page, nil
		case !errors.Is(err, storage.ErrNotExist):
			return contract.FailedPage{}, fmt.Errorf("failed rows of %s: %w", token, err)
		}
	}
	rows, total, err := r.p.Ledger.Failed(ctx, token)
	if err != nil {
		return contract.FailedPage{}, err
	}
	if total > 0 {
		page.Source = "ledger"
	}
	page.Total, page.Truncated = total, total > len(rows)
	for i := offset; i < len(rows) && len(page.Rows) < limit; i++ {
		page.Rows = append(page.Rows, contract.FailedRow{Row: rows[i].Row, Error: rows[i].Error})
	}
	return page, nil
}
