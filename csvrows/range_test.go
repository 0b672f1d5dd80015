package csvrows

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
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
