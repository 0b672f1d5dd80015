package csvrows

import (
	"bufio"
	"fmt"
	"io"
)

// parser splits decoded text into records. It reads byte by byte from a
// bufio.Reader; all CSV syntax is ASCII, so UTF-8 multi-byte characters pass
// through untouched. While a record is read its raw bytes are kept (up to
// maxRow) so a bad quote can be resolved by replaying the lines after it.
type parser struct {
	in      *bufio.Reader
	pending []byte // replayed bytes, read before in
	line    int    // line number of the next byte

	maxField int
	maxRow   int

	raw      []byte // raw bytes of the current record
	rawLost  bool   // raw exceeded maxRow and was dropped
	rowBytes int
	field    []byte
}

// record is one parsed record. fields holds at most keep fields; count is the real number.
type record struct {
	line   int
	fields []string
	// nulls holds the columns (below keep) that were empty and unquoted:
	// Ruby's CSV reads those as nil and a quoted "" as "".
	nulls  []int
	count  int
	err    error // a record sentinel, wrapped with detail by the caller
	reason string
	col    int // 0-based column of the problem, -1 if none
}

func newParser(in *bufio.Reader, maxField, maxRow int) *parser {
	return &parser{in: in, line: 1, maxField: maxField, maxRow: maxRow}
}

const eof = -1

// peek returns the next byte or eof.
func (p *parser) peek() (int, error) {
	if len(p.pending) > 0 {
		return int(p.pending[0]), nil
	}
	b, err := p.in.Peek(1)
	if err == io.EOF {
		return eof, nil
	}
	if err != nil {
		return eof, err
	}
	return int(b[0]), nil
}

// next consumes one byte (or returns eof) and keeps it in raw.
func (p *parser) next() (int, error) {
	var b byte
	if len(p.pending) > 0 {
		b = p.pending[0]
		p.pending = p.pending[1:]
	} else {
		var err error
		b, err = p.in.ReadByte()
		if err == io.EOF {
			return eof, nil
		}
		if err != nil {
			return eof, err
		}
	}
	p.rowBytes++
	if !p.rawLost {
		if len(p.raw) >= p.maxRow {
			p.rawLost = true
			p.raw = p.raw[:0]
		} else {
			p.raw = append(p.raw, b)
		}
	}
	return int(b), nil
}

// endLine consumes the rest of a line break whose first byte c was just read.
func (p *parser) endLine(c int) error {
	p.line++
	if c == '\r' {
		n, err := p.peek()
		if err != nil {
			return err
		}
		if n == '\n' {
			_, err = p.next()
			return err
		}
	}
	return nil
}

// skipLine discards bytes up to and including the next line break.
func (p *parser) skipLine() error {
	for {
		c, err := p.next()
		if err != nil || c == eof {
			return err
		}
		if c == '\r' || c == '\n' {
			return p.endLine(c)
		}
	}
}

// skipBlankLines consumes empty lines; it returns io.EOF when nothing is left.
func (p *parser) skipBlankLines() error {
	for {
		c, err := p.peek()
		if err != nil {
			return err
		}
		switch c {
		case eof:
			return io.EOF
		case '\r', '\n':
			p.next()
			if err := p.endLine(c); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// appendField adds c to the current field unless a limit was passed.
func (p *parser) appendField(rec *record, c byte) {
	if rec.err != nil {
		return
	}
	if p.rowBytes > p.maxRow {
		rec.err, rec.col = ErrRowTooLong, -1
		rec.reason = fmt.Sprintf("more than %d bytes", p.maxRow)
		return
	}
	if len(p.field) >= p.maxField {
		rec.err, rec.col = ErrFieldTooLong, rec.count
		rec.reason = fmt.Sprintf("more than %d bytes", p.maxField)
		return
	}
	p.field = append(p.field, c)
}

func (p *parser) endField(rec *record, keep int) {
	p.endFieldQuoted(rec, keep, true)
}

// endFieldQuoted ends a field; quoted is false for an unquoted one, whose
// empty value is a null (nil in Ruby's CSV).
func (p *parser) endFieldQuoted(rec *record, keep int, quoted bool) {
	if p.rowBytes > p.maxRow && rec.err == nil {
		rec.err, rec.col = ErrRowTooLong, -1
		rec.reason = fmt.Sprintf("more than %d bytes", p.maxRow)
	}
	if !quoted && len(p.field) == 0 && len(rec.fields) < keep {
		rec.nulls = append(rec.nulls, len(rec.fields))
	}
	if len(rec.fields) < keep {
		rec.fields = append(rec.fields, string(p.field))
	}
	rec.count++
	p.field = p.field[:0]
}

// readRecord reads the next record, keeping at most keep fields. It returns
// io.EOF when the input is exhausted; other errors are I/O failures.
// Syntax problems are reported in record.err, never as the error.
func (p *parser) readRecord(keep int) (record, error) {
	if err := p.skipBlankLines(); err != nil {
		return record{}, err
	}
	rec := record{line: p.line, col: -1}
	p.raw = p.raw[:0]
	if cap(p.raw) > 1<<20 {
		p.raw = nil // do not hold on to one huge record's buffer
	}
	if cap(p.field) > 1<<20 {
		p.field = nil
	}
	p.rawLost = false
	p.rowBytes = 0
	p.field = p.field[:0]
	for {
		c, err := p.peek()
		if err != nil {
			return rec, err
		}
		var done bool
		if c == '"' {
			done, err = p.quotedField(&rec, keep)
		} else {
			done, err = p.plainField(&rec, keep)
		}
		if err != nil {
			return rec, err
		}
		if done {
			return rec, nil
		}
	}
}

// plainField reads an unquoted field and its terminator; done reports the end of the record.
func (p *parser) plainField(rec *record, keep int) (done bool, err error) {
	for {
		c, err := p.next()
		if err != nil {
			return true, err
		}
		switch c {
		case eof:
			p.endFieldQuoted(rec, keep, false)
			return true, nil
		case ',':
			p.endFieldQuoted(rec, keep, false)
			return false, nil
		case '\r', '\n':
			p.endFieldQuoted(rec, keep, false)
			return true, p.endLine(c)
		case '"':
			col := rec.count
			p.endFieldQuoted(rec, keep, false)
			rec.err, rec.col = ErrBareQuote, col
			rec.reason = fmt.Sprintf("on line %d; rest of the line skipped", p.line)
			return true, p.skipLine()
		default:
			p.appendField(rec, byte(c))
		}
	}
}

// quotedField reads a quoted field and its terminator; done reports the end of the record.
func (p *parser) quotedField(rec *record, keep int) (done bool, err error) {
	p.next() // opening quote
	openLine := p.line
	openAt := len(p.raw) // raw index just after the opening quote (meaningless if rawLost)
	for {
		c, err := p.next()
		if err != nil {
			return true, err
		}
		switch c {
		case eof:
			col := rec.count
			p.endField(rec, keep)
			rec.err, rec.col = ErrUnterminatedQuote, col
			return true, p.resync(rec, openLine, openAt)
		case '"':
			n, err := p.peek()
			if err != nil {
				return true, err
			}
			switch n {
			case '"':
				p.next()
				p.appendField(rec, '"')
			case ',':
				p.next()
				p.endField(rec, keep)
				return false, nil
			case '\r', '\n':
				p.next()
				p.endField(rec, keep)
				return true, p.endLine(n)
			case eof:
				p.endField(rec, keep)
				return true, nil
			default:
				col := rec.count
				p.endField(rec, keep)
				rec.err, rec.col = ErrQuote, col
				if p.line == openLine {
					rec.reason = fmt.Sprintf("on line %d; rest of the line skipped", p.line)
					return true, p.skipLine()
				}
				return true, p.resync(rec, openLine, openAt)
			}
		case '\r', '\n':
			// Line breaks inside quotes are kept as the file has them
			// (CRLF stays CRLF), as Ruby's CSV keeps them.
			p.appendField(rec, byte(c))
			if c == '\r' {
				if n, err := p.peek(); err != nil {
					return true, err
				} else if n == '\n' {
					p.appendField(rec, '\n')
				}
			}
			if err := p.endLine(c); err != nil {
				return true, err
			}
		default:
			p.appendField(rec, byte(c))
		}
	}
}

// resync ends a record whose quoted field (opened on openLine) went wrong
// after crossing line breaks: the bytes after openLine are replayed so the
// next record starts on the following line.
func (p *parser) resync(rec *record, openLine, openAt int) error {
	if p.rawLost {
		rec.reason = fmt.Sprintf("quote opened on line %d; cannot resynchronise past %d bytes, rest of the input skipped", openLine, p.maxRow)
		p.pending = nil
		_, err := io.Copy(io.Discard, p.in)
		return err
	}
	rest := p.raw[openAt:]
	cut := -1
	for i, b := range rest {
		if b == '\r' || b == '\n' {
			cut = i + 1
			if b == '\r' && i+1 < len(rest) && rest[i+1] == '\n' {
				cut++
			}
			break
		}
	}
	rec.reason = fmt.Sprintf("quote opened on line %d; resuming at line %d", openLine, openLine+1)
	if cut < 0 {
		return nil // the quote was on the last line: nothing to replay
	}
	replay := make([]byte, 0, len(rest)-cut+len(p.pending))
	replay = append(replay, rest[cut:]...)
	p.pending = append(replay, p.pending...)
	p.line = openLine + 1
	return nil
}
