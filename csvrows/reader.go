package csvrows

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/transform"
)

// IsNull reports whether column h was empty and unquoted (nil in Ruby's CSV).
func (r Row) IsNull(h string) bool {
	for _, n := range r.Nulls {
		if n == h {
			return true
		}
	}
	return false
}

// Row is one data record.
type Row struct {
	// Number is the 1-based data row number (the header is not counted; blank lines are skipped).
	Number int
	// Line is the 1-based source line where the record starts.
	Line int
	// Fields maps header name to value. When Err is set it holds whatever could be read.
	Fields map[string]string
	// Nulls names the columns whose cell was empty and unquoted, in column
	// order: Ruby's CSV.parse reads those as nil, a quoted empty cell ("")
	// as "". Fields holds "" for both. Nil when there are none.
	Nulls []string
	// Err is a *RecordError when the record is malformed; reading can continue.
	Err error
	// Start and End are the input bytes the record came from, [Start, End),
	// its line break included (and any blank lines before it): a Reader on
	// the header's bytes followed by those reads the same row again. Exact
	// only when the Reader's OffsetsExact says so; -1 for a decoded
	// Shift_JIS record whose bytes could not be told (never for a record
	// without Err, which ends at a line break or at the end).
	Start, End int64
}

// Reader streams the data rows of a CSV file. It is not safe for concurrent use.
type Reader struct {
	p        *parser
	headers  []string
	encoding string
	number   int
	err      error // sticky I/O error or io.EOF

	// For Offset: the bytes read from the input, and the buffers between it
	// and the parser (text is raw unless the input is decoded).
	src       *byteCounter
	raw, text *bufio.Reader
	// For a decoded input: where the line breaks (CR and LF bytes) end in
	// the input and in the decoded text, the i-th of one being the i-th of
	// the other (see breakTap).
	rawBreaks, textBreaks *breakTap
}

// byteCounter counts the bytes read through it.
type byteCounter struct {
	r io.Reader
	n int64
}

func (c *byteCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Offset is how many bytes of the input the header and the rows returned so
// far came from: the bytes read, less those still buffered ahead of the
// parser. It lets a caller estimate the rows of the whole input from the
// mean length of those read. It is exact for UTF-8, and for Shift_JIS at
// the ends of the header and of the rows (after a line break, or at the
// end of the input), the only places Next and NewReader leave it.
func (r *Reader) Offset() int64 {
	if n, ok := r.exactOffset(); ok {
		return n
	}
	// Not at a line break of a decoded input: the decoder's buffer (a few
	// KiB of decoded text) is counted as input bytes.
	n := r.src.n - int64(r.raw.Buffered()) - int64(len(r.p.pending)) - int64(r.text.Buffered())
	return max(n, 0)
}

// exactOffset is Offset when it is an exact input position. For decoded
// Shift_JIS it maps the decoded position to the input through the line
// breaks: every CR and LF byte of the input decodes to itself, in order,
// and no other byte decodes to one (they are below 0x40, which is never a
// trail byte; a lead byte before one decodes alone to U+FFFD), so after
// the k-th line break of the text the decoder has read exactly the input
// up to its k-th line break.
func (r *Reader) exactOffset() (int64, bool) {
	if r.text == r.raw {
		return max(r.src.n-int64(r.raw.Buffered())-int64(len(r.p.pending)), 0), true
	}
	at := r.textBreaks.n - int64(r.text.Buffered()) - int64(len(r.p.pending))
	if at <= 0 {
		return 0, true
	}
	if r.textBreaks.eof && at == r.textBreaks.n {
		return r.rawBreaks.n, true // the decoder read all the input
	}
	i, found := slices.BinarySearch(r.textBreaks.ends, at)
	if !found || i >= len(r.rawBreaks.ends) {
		return 0, false
	}
	n := r.rawBreaks.ends[i]
	// Breaks before this one are never asked for again: the parser only
	// moves forward (a replay starts after a break it already passed).
	r.textBreaks.drop(i)
	r.rawBreaks.drop(i)
	return n, true
}

// OffsetsExact reports whether Offset, Row.Start and Row.End are exact
// input positions: they are for UTF-8 and for Shift_JIS.
func (r *Reader) OffsetsExact() bool { return true }

// breakTap passes reads through and notes where each CR or LF byte ends,
// counted from the tap's first byte, until drop says they are passed.
type breakTap struct {
	r    io.Reader
	n    int64   // bytes read through
	ends []int64 // positions just after the CR and LF bytes not dropped
	eof  bool
}

func (t *breakTap) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	for i, b := range p[:n] {
		if b == '\r' || b == '\n' {
			t.ends = append(t.ends, t.n+int64(i)+1)
		}
	}
	t.n += int64(n)
	if err == io.EOF {
		t.eof = true
	}
	return n, err
}

// drop forgets the first i breaks. The rest (the breaks of a few KiB read
// ahead) move to the front, so the slice is reused instead of regrown.
func (t *breakTap) drop(i int) {
	if i > 0 {
		t.ends = t.ends[:copy(t.ends, t.ends[i:])]
	}
}

// NewReader reads the header row of r and returns a Reader positioned at the
// first data row. Fatal problems wrap ErrEmpty, ErrNoHeader, ErrBinary,
// ErrTooManyColumns or ErrDuplicateHeader.
func NewReader(r io.Reader, opts Options) (*Reader, error) {
	return newReader(r, opts, sniffSize)
}

// newReader is NewReader sniffing at most sniffLen bytes: ReadRange, whose
// input is a few hundred bytes, does not allocate NewReader's 64 KiB.
func newReader(r io.Reader, opts Options, sniffLen int) (*Reader, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	enc, _ := normalizeEncoding(opts.Encoding)

	src := &byteCounter{r: r}
	raw := bufio.NewReaderSize(src, sniffLen)
	sniff, err := raw.Peek(sniffLen)
	atEOF := err == io.EOF
	if err != nil && !atEOF && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("read csv: %w", err)
	}
	if err := checkBinary(sniff); err != nil {
		return nil, err
	}
	hasBOM := bytes.HasPrefix(sniff, utf8BOM)
	if hasBOM && enc != EncodingShiftJIS {
		enc = EncodingUTF8
		raw.Discard(len(utf8BOM))
		sniff = sniff[len(utf8BOM):]
	}
	if enc == "" {
		enc = detectEncoding(sniff, atEOF)
	}

	text := raw
	var rawBreaks, textBreaks *breakTap
	if enc == EncodingShiftJIS {
		// A Shift_JIS input keeps its BOM-less start: the taps count from
		// the input's first byte.
		rawBreaks = &breakTap{r: raw}
		textBreaks = &breakTap{r: transform.NewReader(rawBreaks, japanese.ShiftJIS.NewDecoder())}
		text = bufio.NewReader(textBreaks)
	}
	cr := &Reader{p: newParser(text, opts.MaxFieldBytes, opts.MaxRowBytes), encoding: enc, src: src, raw: raw, text: text,
		rawBreaks: rawBreaks, textBreaks: textBreaks}

	rec, err := cr.p.readRecord(opts.MaxColumns + 1)
	if err == io.EOF {
		if hasBOM {
			return nil, fmt.Errorf("%w: only a byte order mark", ErrEmpty)
		}
		return nil, ErrEmpty
	}
	if err != nil {
		return nil, fmt.Errorf("read csv header: %w", err)
	}
	if rec.count > opts.MaxColumns {
		return nil, fmt.Errorf("%w: header has more than %d columns", ErrTooManyColumns, opts.MaxColumns)
	}
	if rec.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoHeader, cr.recordError(rec, nil))
	}
	headers, err := cleanHeaders(rec.fields)
	if err != nil {
		return nil, err
	}
	for i, h := range headers {
		if msg := cr.checkText(h); msg != "" {
			return nil, fmt.Errorf("%w: column %d: %s", ErrNoHeader, i+1, msg)
		}
	}
	cr.headers = headers
	return cr, nil
}

// cleanHeaders trims BOMs and white space (including U+3000) and rejects empty and duplicate names.
func cleanHeaders(fields []string) ([]string, error) {
	headers := make([]string, len(fields))
	seen := make(map[string]int, len(fields))
	for i, f := range fields {
		h := strings.TrimSpace(strings.ReplaceAll(f, "\uFEFF", ""))
		if h == "" {
			return nil, fmt.Errorf("%w: column %d has an empty name", ErrNoHeader, i+1)
		}
		if j, dup := seen[h]; dup {
			return nil, fmt.Errorf("%w: %q in columns %d and %d", ErrDuplicateHeader, h, j+1, i+1)
		}
		seen[h] = i
		headers[i] = h
	}
	return headers, nil
}

// Headers returns the column names in file order. The caller must not modify the slice.
func (r *Reader) Headers() []string { return r.headers }

// Encoding returns the encoding in use: EncodingUTF8 or EncodingShiftJIS.
func (r *Reader) Encoding() string { return r.encoding }

// Next returns the next data row. A malformed record is returned as a Row
// with Err set and a nil error; the error is io.EOF at the end of the input
// or an I/O failure of the underlying reader, after which Next keeps
// returning it.
func (r *Reader) Next() (Row, error) {
	if r.err != nil {
		return Row{}, r.err
	}
	start := r.rowOffset()
	rec, err := r.p.readRecord(len(r.headers))
	if err == io.EOF {
		r.err = io.EOF
		return Row{}, io.EOF
	}
	if err != nil {
		r.err = fmt.Errorf("read csv line %d: %w", r.p.line, err)
		return Row{}, r.err
	}
	r.number++
	row := Row{Number: r.number, Line: rec.line, Fields: make(map[string]string, len(r.headers)), Start: start, End: r.rowOffset()}
	for i, v := range rec.fields {
		row.Fields[r.headers[i]] = v
	}
	for _, i := range rec.nulls {
		row.Nulls = append(row.Nulls, r.headers[i])
	}
	if rec.err == nil && rec.count != len(r.headers) {
		rec.err = ErrFieldCount
		rec.reason = fmt.Sprintf("got %d, want %d", rec.count, len(r.headers))
	}
	if rec.err == nil {
		for i, v := range rec.fields {
			if msg := r.checkText(v); msg != "" {
				rec.err, rec.col, rec.reason = ErrInvalidEncoding, i, msg
				break
			}
		}
	}
	if rec.err != nil {
		row.Err = r.recordError(rec, r.headers)
	}
	return row, nil
}

// rowOffset is Offset for Row.Start and Row.End: -1 when it is not exact.
func (r *Reader) rowOffset() int64 {
	if n, ok := r.exactOffset(); ok {
		return n
	}
	return -1
}

// checkText returns why s is not clean text, or "".
func (r *Reader) checkText(s string) string {
	if strings.IndexByte(s, 0) >= 0 {
		return "NUL byte"
	}
	if r.encoding == EncodingShiftJIS {
		if strings.ContainsRune(s, utf8.RuneError) {
			return "invalid or unmapped Shift_JIS byte sequence"
		}
		return ""
	}
	if !utf8.ValidString(s) {
		return "invalid UTF-8"
	}
	return ""
}

func (r *Reader) recordError(rec record, headers []string) *RecordError {
	e := &RecordError{Line: rec.line, Reason: rec.reason, Err: rec.err}
	if headers != nil {
		e.Number = r.number
		if rec.col >= 0 && rec.col < len(headers) {
			e.Column = headers[rec.col]
		}
	} else if rec.col >= 0 {
		e.Column = fmt.Sprintf("#%d", rec.col+1)
	}
	return e
}

// ReadRange reads one row again from the bytes a Reader returned it from:
// header is the input up to the header row's end (the Reader's Offset
// right after NewReader), record is the input from the row's Start to its
// End. The row has the cells, nulls and errors the Reader gave it (not its
// Number or Line). It lets a row travel as a byte range of a stored file
// instead of as its cells.
func ReadRange(header, record []byte, opts Options) (Row, error) {
	// The whole input fits the sniff, as the file's first 64 KiB did.
	n := min(max(len(header)+len(record), 16), sniffSize)
	r, err := newReader(io.MultiReader(bytes.NewReader(header), bytes.NewReader(record)), opts, n)
	if err != nil {
		return Row{}, fmt.Errorf("read the header again: %w", err)
	}
	row, err := r.Next()
	if err != nil {
		return Row{}, fmt.Errorf("read the row again: %w", err)
	}
	if _, err := r.Next(); err != io.EOF {
		return Row{}, errors.New("read the row again: more than one row in the range")
	}
	return row, nil
}
