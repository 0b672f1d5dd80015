package csvrows

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/text/encoding/japanese"
)

var jpHeaders = []string{"個別識別番号", "保険者名", "年度"}

// wantRow is what one row must look like: either values in header order or an error.
type wantRow struct {
	line   int
	values []string
	err    error
}

// readAll reads every row, failing the test on a non-EOF error or a runaway loop.
func readAll(t *testing.T, r *Reader) []Row {
	t.Helper()
	var rows []Row
	for i := 0; ; i++ {
		if i > 1_000_000 {
			t.Fatal("reader does not reach EOF")
		}
		row, err := r.Next()
		if err == io.EOF {
			return rows
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		rows = append(rows, row)
	}
}

func checkRows(t *testing.T, headers []string, got []Row, want []wantRow) {
	t.Helper()
	if len(got) != len(want) {
		for _, g := range got {
			t.Logf("got row %d line %d %q err=%v", g.Number, g.Line, g.Fields, g.Err)
		}
		t.Fatalf("got %d rows, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Number != i+1 {
			t.Errorf("row %d: Number = %d", i, g.Number)
		}
		if g.Line != w.line {
			t.Errorf("row %d: Line = %d, want %d", i+1, g.Line, w.line)
		}
		if w.err != nil {
			if !errors.Is(g.Err, w.err) {
				t.Errorf("row %d: Err = %v, want %v", i+1, g.Err, w.err)
			}
			var re *RecordError
			if !errors.As(g.Err, &re) || re.Line != w.line || re.Number != i+1 {
				t.Errorf("row %d: Err %#v does not carry line %d and number", i+1, g.Err, w.line)
			}
			continue
		}
		if g.Err != nil {
			t.Errorf("row %d: unexpected Err %v", i+1, g.Err)
			continue
		}
		if len(g.Fields) != len(headers) {
			t.Errorf("row %d: %d fields, want %d", i+1, len(g.Fields), len(headers))
		}
		for j, h := range headers {
			if g.Fields[h] != w.values[j] {
				t.Errorf("row %d: %s = %q, want %q", i+1, h, g.Fields[h], w.values[j])
			}
		}
	}
}

func TestReaderFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file    string
		opts    Options
		enc     string
		headers []string
		rows    []wantRow
	}{
		{file: "utf8_bom_crlf.csv", enc: EncodingUTF8, rows: []wantRow{
			{line: 2, values: []string{"1001", "全国健康保険協会", "2024"}},
			{line: 3, values: []string{"1002", "東京都, 国保", "2025"}},
		}},
		{file: "utf8_lf.csv", opts: Options{Encoding: "utf-8"}, enc: EncodingUTF8, rows: []wantRow{
			{line: 2, values: []string{"1001", "全国健康保険協会", "2024"}},
		}},
		{file: "cr_only.csv", enc: EncodingUTF8, rows: []wantRow{
			{line: 2, values: []string{"1001", "協会けんぽ", "2024"}},
			{line: 3, values: []string{"1002", "組合", "2025"}},
		}},
		{file: "mixed_endings.csv", rows: []wantRow{
			{line: 2, values: []string{"1001", "a", "2024"}},
			{line: 3, values: []string{"1002", "b", "2025"}},
			{line: 4, values: []string{"1003", "c", "2026"}},
			{line: 6, values: []string{"1004", "d", "2027"}}, // line 5 is blank
		}},
		{file: "quoted_newline.csv", rows: []wantRow{
			{line: 2, values: []string{"1001", "複数\n行の\"名前\"", "2024"}},
			{line: 4, values: []string{"1002", "a,b", "2025"}},
		}},
		{file: "unbalanced_quote.csv", rows: []wantRow{
			{line: 2, err: ErrUnterminatedQuote},
			{line: 3, values: []string{"1002", "組合", "2025"}},
			{line: 4, values: []string{"1003", "協会", "2026"}},
		}},
		{file: "bare_quote.csv", rows: []wantRow{
			{line: 2, err: ErrBareQuote},
			{line: 3, values: []string{"1002", "組合", "2025"}},
		}},
		{file: "quote_then_text.csv", rows: []wantRow{
			{line: 2, err: ErrQuote},
			{line: 3, values: []string{"1002", "組合", "2025"}},
		}},
		{file: "field_count.csv", rows: []wantRow{
			{line: 2, err: ErrFieldCount},
			{line: 3, err: ErrFieldCount},
			{line: 4, values: []string{"1003", "c", "2026"}},
		}},
		{file: "invalid_utf8.csv", enc: EncodingUTF8, rows: []wantRow{
			{line: 2, values: []string{"1001", "ok", "2024"}},
			{line: 3, err: ErrInvalidEncoding},
			{line: 4, values: []string{"1003", "ok", "2026"}},
		}},
		{file: "header_only.csv", rows: nil},
		{file: "header_spaces.csv", rows: []wantRow{{line: 2, values: []string{"1", "2", "3"}}}},
		{file: "trailing_no_newline.csv", rows: []wantRow{{line: 2, values: []string{"1001", "a", "2024"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			f, err := os.Open(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, err := NewReader(f, tt.opts)
			if err != nil {
				t.Fatalf("NewReader: %v", err)
			}
			headers := tt.headers
			if headers == nil {
				headers = jpHeaders
			}
			if strings.Join(r.Headers(), "|") != strings.Join(headers, "|") {
				t.Fatalf("Headers = %q, want %q", r.Headers(), headers)
			}
			if tt.enc != "" && r.Encoding() != tt.enc {
				t.Errorf("Encoding = %q, want %q", r.Encoding(), tt.enc)
			}
			checkRows(t, headers, readAll(t, r), tt.rows)
			if _, err := r.Next(); err != io.EOF {
				t.Errorf("Next after EOF = %v, want io.EOF", err)
			}
		})
	}
}

func TestReaderFatal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file    string
		want    error
		mention string
	}{
		{"empty.csv", ErrEmpty, ""},
		{"only_bom.csv", ErrEmpty, "byte order mark"},
		{"blank_lines.csv", ErrEmpty, ""},
		{"nul.csv", ErrBinary, "NUL"},
		{"utf16le.csv", ErrBinary, "UTF-16"},
		{"duplicate_header.csv", ErrDuplicateHeader, "年度"},
		{"empty_header.csv", ErrNoHeader, "column 2"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			_, err = NewReader(bytes.NewReader(data), Options{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("NewReader error = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

func TestReaderMalformedHeader(t *testing.T) {
	t.Parallel()
	_, err := NewReader(strings.NewReader("a,b\"c,d\n1,2,3\n"), Options{})
	if !errors.Is(err, ErrNoHeader) || !errors.Is(err, ErrBareQuote) {
		t.Fatalf("error = %v, want ErrNoHeader wrapping ErrBareQuote", err)
	}
	_, err = NewReader(strings.NewReader("a,b\xff,c\n"), Options{Encoding: "utf-8"})
	if !errors.Is(err, ErrNoHeader) || !strings.Contains(err.Error(), "invalid UTF-8") {
		t.Fatalf("error = %v, want ErrNoHeader for invalid UTF-8", err)
	}
}

func TestReaderOptions(t *testing.T) {
	t.Parallel()
	if _, err := NewReader(strings.NewReader("a\n"), Options{Encoding: "latin1"}); err == nil || !strings.Contains(err.Error(), "latin1") {
		t.Errorf("unknown encoding: error = %v", err)
	}
	if _, err := NewReader(strings.NewReader("a\n"), Options{MaxColumns: -1}); err == nil {
		t.Error("negative limit accepted")
	}
}

// sjis encodes UTF-8 text as Shift_JIS (CP932) the way Japanese Excel saves "CSV (comma delimited)".
func sjis(t testing.TB, s string) []byte {
	t.Helper()
	b, err := japanese.ShiftJIS.NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatalf("encode shift_jis: %v", err)
	}
	return b
}

func TestReaderShiftJIS(t *testing.T) {
	t.Parallel()
	text := "個別識別番号,保険者名,年度\r\n1001,全国健康保険協会,2024\r\n1002,\"ｶﾅ,カナ\r\n改行\",2025\r\n"
	data := sjis(t, text)
	if bytes.Equal(data, []byte(text)) {
		t.Fatal("encoding did nothing")
	}
	want := []wantRow{
		{line: 2, values: []string{"1001", "全国健康保険協会", "2024"}},
		{line: 3, values: []string{"1002", "ｶﾅ,カナ\n改行", "2025"}},
	}
	for _, enc := range []string{"", "auto", "shift_jis", "cp932"} {
		t.Run("encoding="+enc, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(data), Options{Encoding: enc})
			if err != nil {
				t.Fatal(err)
			}
			if r.Encoding() != EncodingShiftJIS {
				t.Fatalf("Encoding = %q", r.Encoding())
			}
			checkRows(t, jpHeaders, readAll(t, r), want)
		})
	}
}

// TestReaderCP932Extensions checks the CP932 (Windows-31J) characters Japanese
// Excel writes decode as Windows does, with raw bytes rather than our own encoder.
func TestReaderCP932Extensions(t *testing.T) {
	t.Parallel()
	cells := []struct {
		bytes []byte
		want  string
	}{
		{[]byte{0x87, 0x40}, "①"},  // NEC special row 13
		{[]byte{0x87, 0x8A}, "㈱"},  // NEC special row 13
		{[]byte{0xFA, 0x40}, "ⅰ"},  // IBM extension
		{[]byte{0xFB, 0xFC}, "髙"},  // IBM extension (hashigo-daka)
		{[]byte{0xED, 0x40}, "纊"},  // NEC-selected IBM extension
		{[]byte{0x81, 0x60}, "～"},  // U+FF5E, not WAVE DASH U+301C
		{[]byte{0x81, 0x7C}, "－"},  // U+FF0D, not MINUS SIGN U+2212
		{[]byte{0x81, 0x5F}, "＼"},  // U+FF3C
		{[]byte{0x5C}, `\`},        // ASCII backslash, not YEN SIGN
		{[]byte{0xB1, 0xB2}, "ｱｲ"}, // half-width katakana
	}
	var buf bytes.Buffer
	var headers []string
	for i := range cells {
		if i > 0 {
			buf.WriteByte(',')
		}
		h := string(rune('a' + i))
		headers = append(headers, h)
		buf.WriteString(h)
	}
	buf.WriteString("\r\n")
	var want []string
	for i, c := range cells {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(c.bytes)
		want = append(want, c.want)
	}
	buf.WriteString("\r\n")
	// An ASCII header is valid UTF-8, so the encoding must be given or detected from the data.
	r, err := NewReader(bytes.NewReader(buf.Bytes()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Encoding() != EncodingShiftJIS {
		t.Fatalf("Encoding = %q, want shift_jis", r.Encoding())
	}
	checkRows(t, headers, readAll(t, r), []wantRow{{line: 2, values: want}})
}

func TestReaderShiftJISInvalid(t *testing.T) {
	t.Parallel()
	data := append(sjis(t, "個別識別番号,保険者名,年度\n1001,"), 0x81, 0x20) // lead byte + space
	data = append(data, sjis(t, ",2024\n1002,組合,2025\n")...)
	r, err := NewReader(bytes.NewReader(data), Options{Encoding: "shift_jis"})
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, jpHeaders, readAll(t, r), []wantRow{
		{line: 2, err: ErrInvalidEncoding},
		{line: 3, values: []string{"1002", "組合", "2025"}},
	})
}

func TestDetectEncodingWindowCut(t *testing.T) {
	t.Parallel()
	// A multi-byte character cut by the 64 KiB sniff window must not flip the detection.
	prefix := "h\n" + strings.Repeat("a", sniffSize-3)
	data := prefix + "全\n"
	r, err := NewReader(strings.NewReader(data), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Encoding() != EncodingUTF8 {
		t.Fatalf("Encoding = %q", r.Encoding())
	}
	s := string(sjis(t, "h\n"+strings.Repeat("a", sniffSize-3)+"全\n"))
	r, err = NewReader(strings.NewReader(s), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Encoding() != EncodingShiftJIS && invalidShiftJIS([]byte(s[:sniffSize]), false) != 0 {
		t.Fatalf("Encoding = %q", r.Encoding())
	}
}

func TestReaderLongField(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("あ", 10<<20/3+1) // > 10 MB
	tests := []struct {
		name string
		cell string
	}{
		{"plain", big},
		{"quoted", `"` + big + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := "個別識別番号,保険者名,年度\n1001," + tt.cell + ",2024\n1002,組合,2025\n"
			r, err := NewReader(strings.NewReader(data), Options{})
			if err != nil {
				t.Fatal(err)
			}
			rows := readAll(t, r)
			checkRows(t, jpHeaders, rows, []wantRow{
				{line: 2, err: ErrFieldTooLong},
				{line: 3, values: []string{"1002", "組合", "2025"}},
			})
			var re *RecordError
			if errors.As(rows[0].Err, &re) && re.Column != "保険者名" {
				t.Errorf("Column = %q, want 保険者名", re.Column)
			}
		})
	}
	t.Run("row limit", func(t *testing.T) {
		t.Parallel()
		data := "a,b\n" + strings.Repeat("x", 100) + "," + strings.Repeat("y", 100) + "\n1,2\n"
		r, err := NewReader(strings.NewReader(data), Options{MaxRowBytes: 150})
		if err != nil {
			t.Fatal(err)
		}
		checkRows(t, []string{"a", "b"}, readAll(t, r), []wantRow{
			{line: 2, err: ErrRowTooLong},
			{line: 3, values: []string{"1", "2"}},
		})
	})
	t.Run("unterminated beyond row limit", func(t *testing.T) {
		t.Parallel()
		data := "a,b\n1,\"x\n" + strings.Repeat("2,3\n", 100)
		r, err := NewReader(strings.NewReader(data), Options{MaxRowBytes: 64})
		if err != nil {
			t.Fatal(err)
		}
		rows := readAll(t, r)
		checkRows(t, []string{"a", "b"}, rows, []wantRow{{line: 2, err: ErrUnterminatedQuote}})
		if !strings.Contains(rows[0].Err.Error(), "rest of the input skipped") {
			t.Errorf("error %q does not say the rest was skipped", rows[0].Err)
		}
	})
}

func TestReaderManyColumns(t *testing.T) {
	t.Parallel()
	cols := make([]string, 10000)
	for i := range cols {
		cols[i] = "列_" + itoa(i)
	}
	header := strings.Join(cols, ",") + "\n"
	_, err := NewReader(strings.NewReader(header+strings.Join(cols, ",")+"\n"), Options{})
	if !errors.Is(err, ErrTooManyColumns) {
		t.Fatalf("default limit: error = %v, want ErrTooManyColumns", err)
	}
	r, err := NewReader(strings.NewReader(header+strings.Join(cols, ",")+"\n"), Options{MaxColumns: 10000})
	if err != nil {
		t.Fatalf("MaxColumns 10000: %v", err)
	}
	rows := readAll(t, r)
	if len(rows) != 1 || rows[0].Err != nil || rows[0].Fields["列_9999"] != "列_9999" {
		t.Fatalf("rows = %d, err = %v", len(rows), rows[0].Err)
	}
	// A data row far wider than the header is a field count error, not stored wholesale.
	wide := "a,b\n" + strings.Repeat("1,", 9999) + "1\n3,4\n"
	r, err = NewReader(strings.NewReader(wide), Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, []string{"a", "b"}, readAll(t, r), []wantRow{
		{line: 2, err: ErrFieldCount},
		{line: 3, values: []string{"3", "4"}},
	})
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestReaderNULAfterSniff(t *testing.T) {
	t.Parallel()
	data := "a,b\n" + strings.Repeat("x,y\n", sniffSize/4+10) + "1,\x00\n2,3\n"
	r, err := NewReader(strings.NewReader(data), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var bad []Row
	for _, row := range readAll(t, r) {
		if row.Err != nil {
			bad = append(bad, row)
		}
	}
	if len(bad) != 1 || !errors.Is(bad[0].Err, ErrInvalidEncoding) || !strings.Contains(bad[0].Err.Error(), "NUL") {
		t.Fatalf("bad rows = %+v", bad)
	}
}

// TestReaderResyncAcrossLines: a quote that closes on a later line but is
// followed by text is reported once, and the lines after the opening line are
// read again as records.
func TestReaderResyncAcrossLines(t *testing.T) {
	t.Parallel()
	data := "a,b\n1,\"open\n2,\"x\",y\n3,4\n"
	r, err := NewReader(strings.NewReader(data), Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, []string{"a", "b"}, readAll(t, r), []wantRow{
		{line: 2, err: ErrQuote},
		{line: 3, err: ErrFieldCount},
		{line: 4, values: []string{"3", "4"}},
	})
}

type failingReader struct{ data io.Reader }

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.data.Read(p)
	if err == io.EOF {
		return n, errors.New("disk on fire")
	}
	return n, err
}

func TestReaderIOError(t *testing.T) {
	t.Parallel()
	// More than the sniff window, so the failure happens after NewReader.
	data := "a,b\n" + strings.Repeat("1,2\n", sniffSize/4+100)
	r, err := NewReader(&failingReader{data: strings.NewReader(data)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var last error
	for range sniffSize {
		if _, last = r.Next(); last != nil {
			break
		}
	}
	if last == nil || last == io.EOF || !strings.Contains(last.Error(), "disk on fire") {
		t.Fatalf("error = %v, want the I/O error", last)
	}
	if _, again := r.Next(); again != last {
		t.Errorf("error not sticky: %v", again)
	}
	// A failure inside the sniff window is fatal.
	if _, err := NewReader(&failingReader{data: strings.NewReader("a,b\n")}, Options{}); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("NewReader error = %v", err)
	}
}

// TestOffset: Offset is where the rows returned so far end in the input,
// not how far the buffered reads went.
func TestOffset(t *testing.T) {
	t.Parallel()
	var sb strings.Builder
	sb.WriteString("id,name\n")
	ends := []int64{int64(sb.Len())}
	for i := range 5000 {
		fmt.Fprintf(&sb, "%d,%s\n", i, strings.Repeat("x", i%50))
		ends = append(ends, int64(sb.Len()))
	}
	r, err := NewReader(strings.NewReader(sb.String()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Offset(); got != ends[0] {
		t.Fatalf("after the header: %d, want %d", got, ends[0])
	}
	for i := 1; i <= 5000; i++ {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		if got := r.Offset(); got != ends[i] {
			t.Fatalf("after row %d: %d, want %d", i, got, ends[i])
		}
	}
}
