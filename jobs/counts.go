package jobs

import "context"

// countRow counts rows of token that ended towards its status row's
// done_count and failed_count (run/counts coalesces the writes).
func (p *Pipeline) countRow(ctx context.Context, token string, done, failed int) {
	p.counts.Add(ctx, token, done, failed)
}
