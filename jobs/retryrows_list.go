package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/pallarel/pallarel/storage"
)

// FailedRow is one failed row of a run and why it failed. Row is 0 for a
// row known only by its job (pushed by Ruby without a number).
type FailedRow struct {
	Row   int    `json:"row"`
	Error string `json:"error"`
}

// FailedPage is one page of a run's failed rows.
type FailedPage struct {
	Rows  []FailedRow `json:"rows"`
	Total int         `json:"total"` // failed rows in all (at least; see Truncated)
	// Truncated says the list stopped at its bound while the run runs
	// (the ZIP's manifest lists them all once it has ended).
	Truncated bool `json:"truncated,omitempty"`
	// Source is where the list comes from: "manifest" (the ZIP of an ended
	// run), "ledger" (a run still going) or "none".
	Source string `json:"source"`
}

// FailedRows lists the failed rows of token, limit of them from offset, in
// row order: from the manifest of the run's ZIP once it has one, else from
// the row ledger.
func (p *Pipeline) FailedRows(ctx context.Context, token string, offset, limit int) (FailedPage, error) {
	if _, err := p.tokenQueue(token); err != nil {
		return FailedPage{}, err
	}
	offset, limit = max(offset, 0), max(limit, 1)
	page := FailedPage{Rows: []FailedRow{}, Source: "none"}
	st, err := p.d.DB.StatusByToken(ctx, token)
	if err == nil && st.Ended() {
		z, err := p.openResultZip(ctx, token)
		switch {
		case err == nil:
			defer z.close()
			page.Source = "manifest"
			err = z.eachManifest(func(m manifestLine) error {
				if m.Status == "done" {
					return nil
				}
				if page.Total >= offset && len(page.Rows) < limit {
					page.Rows = append(page.Rows, FailedRow{Row: m.Row, Error: m.Error})
				}
				page.Total++
				return nil
			})
			if err != nil {
				return FailedPage{}, fmt.Errorf("failed rows of %s: %w", token, err)
			}
			return page, nil
		case !errors.Is(err, storage.ErrNotExist):
			return FailedPage{}, fmt.Errorf("failed rows of %s: %w", token, err)
		}
	}
	rows, total, err := p.ledger.Failed(ctx, token)
	if err != nil {
		return FailedPage{}, err
	}
	if total > 0 {
		page.Source = "ledger"
	}
	page.Total, page.Truncated = total, total > len(rows)
	for i := offset; i < len(rows) && len(page.Rows) < limit; i++ {
		page.Rows = append(page.Rows, FailedRow{Row: rows[i].Row, Error: rows[i].Error})
	}
	return page, nil
}
