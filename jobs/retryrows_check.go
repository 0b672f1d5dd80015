package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/pallarel/pallarel/csvrows"
)

// countRunnable reads the stored upload up to the last row in want and
// counts the rows of want that parse, which a retry can run again (a row
// the CSV cannot parse fails again whatever is retried). It reads as
// pushRetryRows does.
func (p *Pipeline) countRunnable(ctx context.Context, sourceKey string, want map[int]string) (int, error) {
	last := 0
	for n := range want {
		last = max(last, n)
	}
	rc, err := p.d.Store.Open(ctx, sourceKey)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", sourceKey, err)
	}
	defer rc.Close()
	rows, err := csvrows.NewReader(rc, csvrows.Options{})
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", sourceKey, err)
	}
	n := 0
	for {
		row, err := rows.Next()
		if errors.Is(err, io.EOF) || (err == nil && row.Number > last) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read %s: %w", sourceKey, err)
		}
		if _, ok := want[row.Number]; ok && row.Err == nil {
			n++
		}
	}
}
