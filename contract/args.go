package contract

import "encoding/json"

// SplitArgs are SplitCsvJob's arguments: [csv, type, report_id]. Source is
// the CSV text (as the Rails controller sends it) or a SourceRef.
type SplitArgs struct {
	Source   any
	Type     string
	ReportID int64
}

// Positional is the arguments in wire order.
func (a SplitArgs) Positional() []any { return []any{a.Source, a.Type, a.ReportID} }

// SourceRef is SplitCsvJob's first argument when the CSV travels by storage
// reference instead of inline (a Go extension: the Rails controller sends
// the whole CSV as a string, which does not scale to large files).
type SourceRef struct {
	SourceKey   string `json:"source_key"`             // storage key of the uploaded CSV
	Token       string `json:"token,omitempty"`        // token chosen at upload time
	Encoding    string `json:"encoding,omitempty"`     // "", "auto", "utf-8", "shift_jis", "cp932"
	TemplateKey string `json:"template_key,omitempty"` // storage key of an XLSX template
}

// RowArgs are Report::ProcessCsvRowJob's arguments:
// [row_hash, type, report_id, path, token].
type RowArgs struct {
	Row      json.RawMessage // the row as a JSON object, header → cell, in header order
	Type     string
	ReportID int64
	Path     string // ReportDir(token)
	Token    string
}

// RowRef is a row job's first argument in place of row_hash when Go's
// workers alone consume the run: where the row sits in the stored upload,
// so that no cell of it is written to Redis (its queue, retry and dead
// sets, its AOF and RDB files). Go's row job reads the row again with a
// ranged read of the upload (csvrows.ReadRange). A row job carrying one
// has RowRefMarker as a sixth argument, which makes the Rails app's
// perform(row, type, report_id, path, token) raise ArgumentError rather
// than render a reference as if it were the row.
type RowRef struct {
	SourceKey string `json:"pallarel_row_ref"` // storage key of the upload
	Header    int64  `json:"header"`           // bytes of the upload up to the header row's end
	Offset    int64  `json:"offset"`           // where the row's bytes start
	Length    int64  `json:"length"`           // how many bytes the row has
	// Encoding is "shift_jis" for a Shift_JIS (CP932) upload, whose header
	// and row bytes are decoded again as the split decoded them; empty
	// (left out) for UTF-8.
	Encoding string `json:"encoding,omitempty"`
}

// RowRefMarker is the sixth argument of a row job whose first is a RowRef.
const RowRefMarker = "pallarel:row-ref:v1"

// RowTokenPos is the token's position in a row job's arguments.
const RowTokenPos = 4

// Positional is the arguments in wire order.
func (a RowArgs) Positional() []any { return []any{a.Row, a.Type, a.ReportID, a.Path, a.Token} }

// RefPositional is the arguments in wire order of a row job carrying ref
// instead of the row: [ref, type, report_id, path, token, RowRefMarker].
func (a RowArgs) RefPositional(ref RowRef) []any {
	return []any{ref, a.Type, a.ReportID, a.Path, a.Token, RowRefMarker}
}

// Fields of ours a row job carries beside its arguments (Ruby ignores them).
const (
	FieldRow      = "pallarel_row"      // 1-based data row number
	FieldTemplate = "pallarel_template" // storage key of an XLSX template
)

// FinalizeArgs are Report::FinalizeReportJob's arguments:
// [path, type, report_id, token, interval_sec, max_wait_sec, started_at].
type FinalizeArgs struct {
	Path        string
	Type        string
	ReportID    int64
	Token       string
	IntervalSec int
	MaxWaitSec  int
	StartedAt   int64 // Unix seconds
}

// FinalizeTokenPos is the token's position in a finalize job's arguments.
const FinalizeTokenPos = 3

// Positional is the arguments in wire order.
func (a FinalizeArgs) Positional() []any {
	return []any{a.Path, a.Type, a.ReportID, a.Token, a.IntervalSec, a.MaxWaitSec, a.StartedAt}
}

// TokenPos is where class's token is among its arguments, for the classes
// that must run on their token's queue.
func TokenPos(class string) (int, bool) {
	switch {
	case Row.Is(class):
		return RowTokenPos, true
	case Finalize.Is(class):
		return FinalizeTokenPos, true
	}
	return 0, false
}

// Job is a job of the contract ready to push: its class, queue, arguments
// in wire order, retry (RetryDefault: not written) and our extra fields.
// jobs turns it into a sidekiq.Job (toSidekiq), so that no caller spells a
// class's argument order or options.
type Job struct {
	Class  Class
	Queue  string
	Args   []any
	Retry  int
	Fields []Field
}

// Field is an extra payload field of ours, written in order.
type Field struct {
	Name  string
	Value any
}

// RowJob is THE row job of args on queue, with retry retries (ROW_JOB_RETRY;
// a negative retry takes the class's 3), its row number and template.
// The split, the supervisor and "Retry failed rows" all build it here.
func RowJob(queue string, args RowArgs, retry, rowNum int, templateKey string) Job {
	if retry < 0 {
		retry = Row.Retry
	}
	f := []Field{{FieldRow, rowNum}}
	if templateKey != "" {
		f = append(f, Field{FieldTemplate, templateKey})
	}
	return Job{Class: Row, Queue: queue, Args: args.Positional(), Retry: retry, Fields: f}
}

// FinalizeJob is the finalize job of args on queue.
func FinalizeJob(queue string, args FinalizeArgs) Job {
	return Job{Class: Finalize, Queue: queue, Args: args.Positional(), Retry: Finalize.Retry}
}

// SplitJob is SplitCsvJob of args, on queue "report".
func SplitJob(args SplitArgs) Job {
	return Job{Class: Split, Queue: Split.Queue, Args: args.Positional(), Retry: Split.Retry}
}

// IdleJob is IdleShutdownJob of token on queue (the token's, or "default").
func IdleJob(queue, token string) Job {
	return Job{Class: Idle, Queue: queue, Args: []any{token}, Retry: Idle.Retry}
}

// WebhookJob delivers body (a run's end, JSON) to url.
func WebhookJob(url, body string) Job {
	return Job{Class: Webhook, Queue: Webhook.Queue, Args: []any{url, body}, Retry: Webhook.Retry}
}

// CancelCleanupJob sweeps a cancelled run's leftovers once more.
func CancelCleanupJob(token string) Job {
	return Job{Class: CancelCleanup, Queue: CancelCleanup.Queue, Args: []any{token}, Retry: CancelCleanup.Retry}
}
