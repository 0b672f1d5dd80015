package jobs

import "context"

// RunEndedForTest lets the external tests call runEnded as the finalizer
// and the supervisor do.
func (p *Pipeline) RunEndedForTest(ctx context.Context, token string) { p.runEnded(ctx, token) }
