package csvrows

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// checkRanges reads data and reads every good row again from its byte
// range (ReadRange): the cells and nulls must be the ones the Reader gave.
func checkRanges(t *testing.T, data []byte, opts Options) (rows int) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data), opts)
	if err != nil {
		return 0
	}
	if !r.OffsetsExact() {
		return 0
	}
	header := data[:r.Offset()]
	for {
		row, err := r.Next()
		if err == io.EOF {
			return rows
		}
		if err != nil {
			t.Fatal(err)
		}
		if row.Err != nil {
			continue
		}
		if row.Start < int64(len(header)) || row.End < row.Start || row.End > int64(len(data)) {
			t.Fatalf("row %d: range [%d, %d) outside the data after the header (%d of %d bytes)", row.Number, row.Start, row.End, len(header), len(data))
		}
		again, err := ReadRange(header, data[row.Start:row.End], Options{Encoding: r.Encoding(), MaxFieldBytes: opts.MaxFieldBytes, MaxColumns: opts.MaxColumns, MaxRowBytes: opts.MaxRowBytes})
		if err != nil {
			t.Fatalf("row %d [%d, %d) %q: %v", row.Number, row.Start, row.End, data[row.Start:row.End], err)
		}
		if again.Err != nil || !reflect.DeepEqual(again.Fields, row.Fields) || !reflect.DeepEqual(again.Nulls, row.Nulls) {
			t.Fatalf("row %d read again from [%d, %d) %q:\n got %q nulls %q err %v\nwant %q nulls %q", row.Number, row.Start, row.End,
				data[row.Start:row.End], again.Fields, again.Nulls, again.Err, row.Fields, row.Nulls)
		}
		rows++
	}
}

// TestReadRange: every good row of the test files, and of files with
// quoted CRLF, nil and "" cells, a BOM and rows after a bad quote, reads
// again from its byte range with the same cells.
func TestReadRange(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob(filepath.Join("testdata", "*.csv"))
	total := 0
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		total += checkRanges(t, data, Options{})
	}
	for _, s := range []string{
		"\uFEFFid,name,memo\r\n1,\"a\r\nb\",\r\n2,,\"\"\r\n\r\n3,\"x\"\"y\",z",
		"id,name\n1,\"bad\"quote\n2,after\n3,\"open\n4,more\n5,last\n",
		"id,name\r1,a\r2,\"b\rc\"\r",
		"a,b\n\"x\n\"\"y\",z\r1,\"2\"\"\"\r\n",
	} {
		if checkRanges(t, []byte(s), Options{}) == 0 {
			t.Fatalf("no good row in %q", s)
		}
	}
	if total == 0 {
		t.Fatal("no good row in testdata")
	}
}

// TestReadRangeShiftJIS: a Shift_JIS (CP932) upload's rows have exact
// byte ranges too, and read again from them (decoded alone) with the
// split's cells: multi-byte names, trail bytes that are ASCII ('\\' in
// ソ and 表, '@' in ①), half-width katakana, quoted commas, CRLF and bare
// LF inside quotes, nil and "" cells, rows after bad ones (an invalid
// sequence, a lead byte before the line break, a bad quote), and a last
// row without a line break. A row far past the decoder's first buffers
// checks that the offsets stay exact through a long file.
func TestReadRangeShiftJIS(t *testing.T) {
	t.Parallel()
	good := "個別識別番号,保険者名,memo\r\n" +
		"000123,全国健康保険協会,\"ソ表能,予\r\n改行\"\r\n" +
		"000124,ｶﾅｶﾅ ﾊﾝｶｸ,\"\"\r\n" +
		"000125,,\"x\"\"y\nz\"\r\n\r\n"
	var long strings.Builder
	long.WriteString(good)
	for i := range 3000 {
		fmt.Fprintf(&long, "%06d,健保組合ｱｲｳ%d,\"①,②\r\n③\"\r\n", i, i%97)
	}
	long.WriteString("999999,最後,行末なし")
	bad := append(sjis(t, good), sjis(t, "1,")...)
	bad = append(bad, 0x81, 0x20) // lead byte + space: invalid
	bad = append(bad, sjis(t, ",a\r\n2,x")...)
	bad = append(bad, 0x88)                                              // lead byte before the line break
	bad = append(bad, sjis(t, ",b\r\n3,\"開く\n4,閉\"じ,c\r\n5,後,d\r\n")...) // a bad quote across lines
	for name, data := range map[string][]byte{"good": sjis(t, good), "long": sjis(t, long.String()), "bad": bad} {
		for _, enc := range []string{"", EncodingShiftJIS} {
			r, err := NewReader(bytes.NewReader(data), Options{Encoding: enc})
			if err != nil {
				t.Fatal(err)
			}
			if r.Encoding() != EncodingShiftJIS || !r.OffsetsExact() {
				t.Fatalf("%s: encoding %q, exact offsets %v", name, r.Encoding(), r.OffsetsExact())
			}
			n := checkRanges(t, data, Options{Encoding: enc})
			want := map[string]int{"good": 3, "long": 3004, "bad": 4}[name]
			if n != want {
				t.Fatalf("%s (encoding %q): %d good rows read again, want %d", name, enc, n, want)
			}
		}
	}
}

// TestShiftJISOffset: after the header and after each row, Offset is the
// input position where it ended, as for UTF-8.
func TestShiftJISOffset(t *testing.T) {
	t.Parallel()
	var data []byte
	data = append(data, sjis(t, "番号,名前\n")...)
	ends := []int64{int64(len(data))}
	for i := range 3000 {
		data = append(data, sjis(t, fmt.Sprintf("%d,%s\n", i, strings.Repeat("漢ｶ", i%40)))...)
		ends = append(ends, int64(len(data)))
	}
	r, err := NewReader(bytes.NewReader(data), Options{Encoding: EncodingShiftJIS})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Offset(); got != ends[0] {
		t.Fatalf("after the header: %d, want %d", got, ends[0])
	}
	for i := 1; i <= 3000; i++ {
		row, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Offset(); got != ends[i] || row.Start != ends[i-1] || row.End != ends[i] {
			t.Fatalf("row %d: [%d, %d), Offset %d; want [%d, %d)", i, row.Start, row.End, got, ends[i-1], ends[i])
		}
	}
}

// FuzzReadRange: any input's good rows read again from their ranges.
func FuzzReadRange(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.csv"))
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("id,name\n1,\"bad\"quote\n2,after\n3,\"open\n4,more\n"))
	f.Add(append(sjis(f, "番号,名前\r\n1,\"ソ表,ｶﾅ\r\n改行\"\r\n2,"), 0x81, '\n', '3', ',', 0x88, 0x9F, '\r'))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRanges(t, data, Options{MaxFieldBytes: 64, MaxColumns: 16, MaxRowBytes: 256})
	})
}

// BenchmarkReadRange is a referenced row's parse in the row job (its
// header and its bytes, as jobs' row references read them).
func BenchmarkReadRange(b *testing.B) {
	header := []byte("個別識別番号,保険者名,年度,memo\r\n")
	rec := []byte("000123,全国健康保険協会,2024,\"a\r\nb\"\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadRange(header, rec, Options{Encoding: EncodingUTF8}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReaderShiftJIS is a split's read of a Shift_JIS upload (its
// line breaks noted for the rows' byte ranges).
func BenchmarkReaderShiftJIS(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("個別識別番号,保険者名,年度,memo\r\n")
	for i := range 20000 {
		fmt.Fprintf(&sb, "%06d,全国健康保険協会ｶﾅ%d,2024,\"住所\r\n東京都\"\r\n", i, i%97)
	}
	data := sjis(b, sb.String())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := NewReader(bytes.NewReader(data), Options{Encoding: EncodingShiftJIS})
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
}
