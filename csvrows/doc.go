// Package csvrows reads uploaded CSV files row by row, as Japanese Excel and
// other real-world tools write them.
//
// A Reader streams: it never holds more than one record (bounded by
// Options.MaxRowBytes) plus a small read buffer, so a 1 GB upload reads in
// flat memory.
//
// Encodings. UTF-8 with or without BOM, and Shift_JIS as Japanese Excel writes
// it (Windows-31J / CP932). Shift_JIS is decoded with
// golang.org/x/text/encoding/japanese.ShiftJIS, which follows the WHATWG
// Shift_JIS table and therefore decodes the CP932 extensions: NEC special
// characters (①, ㈱, Ⅰ), NEC-selected and IBM extensions (0xED/0xEE, 0xFA-0xFC
// rows, e.g. 髙 﨑) and the Microsoft mappings (0x815F → U+FF3C, 0x8160 →
// U+FF5E, 0x817C → U+FF0D). User-defined characters (0xF040-0xF9FC, "gaiji")
// have no Unicode mapping there and are reported as invalid. With Encoding ""
// or "auto", the first 64 KiB are sniffed: a NUL byte means a binary (or
// UTF-16) file and NewReader fails with ErrBinary; valid UTF-8 (ASCII
// included) is read as UTF-8; otherwise the encoding with fewer invalid
// sequences wins, ties going to UTF-8. A file whose first 64 KiB are pure
// ASCII is read as UTF-8; if Shift_JIS text appears later, its rows fail with
// ErrInvalidEncoding, so pass Encoding "shift_jis" when the source is known.
//
// Syntax. RFC 4180 with encoding/csv's strict quoting (LazyQuotes=false):
// fields are separated by commas; a record ends at CRLF, LF or a lone CR, and
// the three may be mixed in one file; a field that starts with a double quote
// may contain commas, line breaks and doubled quotes (""). Line breaks inside
// quoted fields are kept as the file has them (CRLF, LF or CR), and an empty
// unquoted cell is listed in Row.Nulls, as Ruby's CSV.parse(headers: true)
// reads a file (nil there, "" for a quoted empty cell). Lines that are
// completely empty are skipped and are not counted as rows (Ruby's CSV
// gives them a row of nils).
//
// Bad records. A malformed record yields a Row whose Err is a *RecordError
// (checkable with errors.Is against ErrFieldCount, ErrBareQuote,
// ErrQuote, ErrUnterminatedQuote, ErrFieldTooLong, ErrRowTooLong,
// ErrInvalidEncoding) and reading continues:
//   - wrong field count, invalid text, over-long field or record: the record
//     is parsed to its normal end and the next record follows;
//   - a bare quote in an unquoted field: the rest of that line is skipped;
//   - a quoted field that never closes, or a quote followed by something
//     other than a comma or line end: the error covers the record up to the
//     line where that quoted field opened, and parsing resynchronises at the
//     next line (the bytes read ahead are replayed). This needs the read-ahead
//     to fit in MaxRowBytes; past that the rest of the input is skipped and
//     the error says so.
//
// Fatal problems (no usable header, binary input, too many columns, duplicate
// or empty column names) make NewReader fail with an error wrapping one of
// ErrEmpty, ErrNoHeader, ErrBinary, ErrTooManyColumns or ErrDuplicateHeader.
// A file with a header and no data rows is not an error: Next returns io.EOF.
//
// Byte ranges. Row.Start and Row.End are the input bytes a row came from,
// in Shift_JIS as in UTF-8, and ReadRange reads it again from those bytes
// and the header's: a row can travel as a range of a stored file. In
// Shift_JIS the decoded text's CR and LF bytes are the input's, one for
// one and in order (they are below 0x40, never a trail byte), and rows end
// at line breaks, so the Reader maps its place in the text to the input
// through the line breaks it has passed.
package csvrows
