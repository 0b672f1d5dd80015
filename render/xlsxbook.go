package render

import (
	"bufio"
	"bytes"
	"compress/flate"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// book is a workbook prepared once: its zip entries in order, the unchanged
// ones already deflated (copied into each file as they are), the row's own
// ones (the sheets that hold the row's values) written by a stamp function.
// Rendering a row is then writing a few kilobytes of XML and one deflate.
type book struct {
	parts []bookPart
}

type bookPart struct {
	name  string
	raw   []byte // deflated content of an unchanged part
	crc   uint32
	size  uint64
	stamp func(w *bufio.Writer, row Row) error // writes a part made per row; nil when unchanged
}

// addStatic deflates data once and adds it as an unchanged part.
func (b *book) addStatic(name string, data []byte) error {
	var buf bytes.Buffer
	fw, err := flate.NewWriter(&buf, flate.DefaultCompression)
	if err != nil {
		return err
	}
	if _, err := fw.Write(data); err != nil {
		return err
	}
	if err := fw.Close(); err != nil {
		return err
	}
	b.parts = append(b.parts, bookPart{name: name, raw: buf.Bytes(), crc: crc32.ChecksumIEEE(data), size: uint64(len(data))})
	return nil
}

// addRaw adds an unchanged part that is already deflated (copied from a template).
func (b *book) addRaw(name string, raw []byte, crc uint32, size uint64) {
	b.parts = append(b.parts, bookPart{name: name, raw: raw, crc: crc, size: size})
}

func (b *book) addStamped(name string, stamp func(w *bufio.Writer, row Row) error) {
	b.parts = append(b.parts, bookPart{name: name, stamp: stamp})
}

// Deflate writers are reused across rows: a new one allocates ~1 MB.
var flateWriters = sync.Pool{New: func() any {
	fw, _ := flate.NewWriter(io.Discard, flate.BestSpeed)
	return fw
}}

// storeBelow is the size under which a row's part is stored, not deflated:
// building Huffman tables for a few KB costs more CPU than the bytes it
// saves, and the report ZIP deflates the whole file again anyway.
const storeBelow = 16 << 10

var partBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

var bufWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(io.Discard, 32<<10) }}

// write writes the workbook for row to w, every entry dated now.
func (b *book) write(w io.Writer, row Row, now time.Time) error {
	dosDate, dosTime := msDosTime(now)
	zw := newPartZip(w, dosDate, dosTime)
	defer zw.release()
	for _, p := range b.parts {
		if p.stamp == nil {
			zw.entry(p.name, zipDeflate, p.crc, p.raw, int64(p.size))
			if zw.err != nil {
				return fmt.Errorf("zip %s: %w", p.name, zw.err)
			}
			continue
		}
		sp := &spillPart{zw: zw, name: p.name, buf: partBufs.Get().(*bytes.Buffer)}
		sp.buf.Reset()
		bw := bufWriters.Get().(*bufio.Writer)
		bw.Reset(sp)
		err := p.stamp(bw, row)
		if err == nil {
			err = bw.Flush()
		}
		bw.Reset(io.Discard)
		bufWriters.Put(bw)
		if err == nil {
			err = sp.close()
		}
		if sp.buf.Cap() <= 4*storeBelow {
			partBufs.Put(sp.buf)
		}
		if err != nil {
			return fmt.Errorf("zip %s: %w", p.name, err)
		}
	}
	return zw.close()
}

// maxCellChars is Excel's limit on a cell's text, in UTF-16 code units;
// longer text is cut (Excel refuses to open a file with a longer cell).
const maxCellChars = 32767

// writeCell writes one <c> element for cell at ref with style s (no s
// attribute when s is 0). prefix is the element prefix the sheet uses ("" or
// "x:"). An empty text cell keeps its style and has no value.
func writeCell(w *bufio.Writer, prefix, ref string, s int, c Cell, numStyle, dateStyle, dateTimeStyle int) {
	w.WriteByte('<')
	w.WriteString(prefix)
	w.WriteString(`c r="`)
	w.WriteString(ref)
	writeCellRest(w, prefix, s, c, numStyle, dateStyle, dateTimeStyle)
}

// writeCellAt is writeCell, unprefixed, at column col (one letter) of row
// (its digits), without building the reference string.
func writeCellAt(w *bufio.Writer, col byte, row int, s int, c Cell, numStyle, dateStyle, dateTimeStyle int) {
	w.WriteString(`<c r="`)
	w.WriteByte(col)
	writeInt(w, row)
	writeCellRest(w, "", s, c, numStyle, dateStyle, dateTimeStyle)
}

// writeInt writes n in decimal into w's own buffer (a stack buffer passed
// to Write escapes: one allocation a number).
func writeInt(w *bufio.Writer, n int) {
	w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(n), 10))
}

// writeFloat writes f as strconv's 'f', -1 does, into w's own buffer.
func writeFloat(w *bufio.Writer, f float64) {
	w.Write(strconv.AppendFloat(w.AvailableBuffer(), f, 'f', -1, 64))
}

// writeCellRest writes a cell's element after its reference.
func writeCellRest(w *bufio.Writer, prefix string, s int, c Cell, numStyle, dateStyle, dateTimeStyle int) {
	w.WriteByte('"')
	switch c.Kind {
	case KindNumber, KindDate:
		switch {
		case c.Kind == KindDate && c.HasTime:
			s = dateTimeStyle
		case c.Kind == KindDate:
			s = dateStyle
		default:
			s = numStyle
		}
		writeStyle(w, s)
		// t="n" is the default; written so readers that ask for a type get one.
		w.WriteString(` t="n"><`)
		w.WriteString(prefix)
		w.WriteString("v>")
		writeFloat(w, c.Number)
		w.WriteString("</")
		w.WriteString(prefix)
		w.WriteString("v></")
		w.WriteString(prefix)
		w.WriteString("c>")
	default:
		writeStyle(w, s)
		if c.Text == "" {
			w.WriteString("/>")
			return
		}
		w.WriteString(` t="inlineStr"><`)
		w.WriteString(prefix)
		w.WriteString("is><")
		w.WriteString(prefix)
		w.WriteString("t")
		if needsPreserve(c.Text) {
			w.WriteString(` xml:space="preserve"`)
		}
		w.WriteByte('>')
		writeXMLText(w, c.Text)
		w.WriteString("</")
		w.WriteString(prefix)
		w.WriteString("t></")
		w.WriteString(prefix)
		w.WriteString("is></")
		w.WriteString(prefix)
		w.WriteString("c>")
	}
}

func writeStyle(w *bufio.Writer, s int) {
	if s > 0 {
		w.WriteString(` s="`)
		writeInt(w, s)
		w.WriteByte('"')
	}
}

func needsPreserve(s string) bool {
	if s == "" {
		return false
	}
	first, last := s[0], s[len(s)-1]
	return first == ' ' || first == '\t' || first == '\n' || first == '\r' ||
		last == ' ' || last == '\t' || last == '\n' || last == '\r'
}

// writeXMLText escapes s for XML character data, drops characters XML 1.0
// cannot hold (control characters other than tab and line breaks, invalid
// UTF-8 becomes U+FFFD), and cuts it at Excel's cell limit.
func writeXMLText(w *bufio.Writer, s string) {
	units := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			units++
			if units > maxCellChars {
				return
			}
			switch {
			case c == '<':
				w.WriteString("&lt;")
			case c == '>':
				w.WriteString("&gt;")
			case c == '&':
				w.WriteString("&amp;")
			case c == '\r':
				w.WriteString("&#13;") // a bare CR would be read back as a line feed
			case c < 0x20 && c != '\t' && c != '\n':
				// not allowed in XML 1.0: dropped
			default:
				w.WriteByte(c)
			}
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		if r >= 0x10000 {
			units += 2
		} else {
			units++
		}
		if units > maxCellChars {
			return
		}
		switch {
		case r == utf8.RuneError && n == 1:
			w.WriteString("\uFFFD")
		case r == 0xFFFE || r == 0xFFFF:
			// not allowed in XML 1.0: dropped
		default:
			w.WriteString(s[i-n : i])
		}
	}
}

// cellRef returns the A1-style reference of 1-based column col and row r.
func cellRef(col, r int) string {
	var b [16]byte
	i := len(b)
	for n := r; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	for c := col; c > 0; c = (c - 1) / 26 {
		i--
		b[i] = byte('A' + (c-1)%26)
	}
	return string(b[i:])
}

// spillPart writes a stamped part: held in memory while it is under
// storeBelow (then stored), deflated as it comes once it is bigger, so a
// big sheet is never held whole.
type spillPart struct {
	zw   *partZip
	name string
	buf  *bytes.Buffer
	w    *zipStream // the deflating entry, once spilled
	fw   *flate.Writer
}

func (s *spillPart) Write(p []byte) (int, error) {
	if s.w != nil {
		return s.w.Write(p)
	}
	if s.buf.Len()+len(p) < storeBelow {
		return s.buf.Write(p)
	}
	s.fw = flateWriters.Get().(*flate.Writer)
	s.w = s.zw.deflated(s.name, s.fw)
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return 0, err
	}
	return s.w.Write(p)
}

func (s *spillPart) close() error {
	if s.w != nil {
		err := s.w.close()
		s.fw.Reset(io.Discard)
		flateWriters.Put(s.fw)
		return err
	}
	s.zw.entry(s.name, zipStore, bufferedCRC(s.buf), s.buf.Bytes(), int64(s.buf.Len()))
	return s.zw.err
}

// msDosTime is a zip entry's MS-DOS date and time for t (two-second steps,
// from 1980 on), as archive/zip writes them for CreateHeader.
func msDosTime(t time.Time) (date, tm uint16) {
	if t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, t.Location())
	}
	date = uint16(t.Day() + int(t.Month())<<5 + (t.Year()-1980)<<9)
	tm = uint16(t.Second()/2 + t.Minute()<<5 + t.Hour()<<11)
	return date, tm
}
