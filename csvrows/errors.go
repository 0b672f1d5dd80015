package csvrows

import (
	"errors"
	"fmt"
)

// Fatal errors returned (wrapped) by NewReader.
var (
	// ErrEmpty means the input has no content: zero bytes, only a BOM, or only line breaks.
	ErrEmpty = errors.New("empty csv file")
	// ErrNoHeader means the first record cannot serve as a header (malformed, or a column has no name).
	ErrNoHeader = errors.New("no usable header row")
	// ErrBinary means the input is not text: it contains NUL bytes (binary data or UTF-16).
	ErrBinary = errors.New("binary file")
	// ErrTooManyColumns means the header has more columns than Options.MaxColumns.
	ErrTooManyColumns = errors.New("too many columns")
	// ErrDuplicateHeader means two header columns have the same name after trimming.
	ErrDuplicateHeader = errors.New("duplicate header name")
)

// Record errors, carried by Row.Err inside a *RecordError.
var (
	// ErrFieldCount means the record does not have one field per header column.
	ErrFieldCount = errors.New("wrong number of fields")
	// ErrBareQuote means a double quote appeared inside an unquoted field.
	ErrBareQuote = errors.New(`bare " in non-quoted field`)
	// ErrQuote means a closing quote was followed by something other than a comma or line end.
	ErrQuote = errors.New(`extraneous or missing " in quoted field`)
	// ErrUnterminatedQuote means a quoted field was still open at the end of the input.
	ErrUnterminatedQuote = errors.New("unterminated quoted field")
	// ErrFieldTooLong means a field is longer than Options.MaxFieldBytes.
	ErrFieldTooLong = errors.New("field too long")
	// ErrRowTooLong means a record is longer than Options.MaxRowBytes.
	ErrRowTooLong = errors.New("record too long")
	// ErrInvalidEncoding means a field is not valid text in the file's encoding (or holds a NUL byte).
	ErrInvalidEncoding = errors.New("invalid text encoding")
)

// RecordError describes why one record could not be read.
type RecordError struct {
	Line   int    // source line where the record starts
	Number int    // data row number (0 for the header)
	Column string // header name of the bad field, when known
	Reason string // human detail, e.g. "got 4 fields, want 3"
	Err    error  // one of the Err* record sentinels
}

// Error reports the line, the row, the column and the reason.
func (e *RecordError) Error() string {
	msg := fmt.Sprintf("line %d", e.Line)
	if e.Number > 0 {
		msg += fmt.Sprintf(" (row %d)", e.Number)
	}
	if e.Column != "" {
		msg += fmt.Sprintf(" column %q", e.Column)
	}
	msg += ": " + e.Err.Error()
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Unwrap returns the sentinel so errors.Is works.
func (e *RecordError) Unwrap() error { return e.Err }

// ErrorText is why r could not be read, as a run's manifest gives it: a
// RecordError (which names its line and row already) as it is, any other
// error after its line. Empty when r was read.
func (r Row) ErrorText() string {
	if r.Err == nil {
		return ""
	}
	var re *RecordError
	if errors.As(r.Err, &re) {
		return r.Err.Error()
	}
	return fmt.Sprintf("line %d: %v", r.Line, r.Err)
}
