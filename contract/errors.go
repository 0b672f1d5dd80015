package contract

import "errors"

// The run controls' refusals (Cancel, "Retry failed rows"), returned
// wrapped by the run package and mapped to pages by server.
var (
	// ErrRunEnded: Cancel of a run that has already ended.
	ErrRunEnded = errors.New("the run has already ended")
	// ErrNotRetryable: the run is not a completed run with failed rows
	// whose CSV was stored.
	ErrNotRetryable = errors.New("the run cannot be retried")
	// ErrRetryBusy: another retry of the run is under way.
	ErrRetryBusy = errors.New("a retry of this run is under way")
	// ErrNothingToRetry: every failed row failed to parse, so running it
	// again would fail it again; the run is left as it ended.
	ErrNothingToRetry = errors.New("nothing to retry")
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
