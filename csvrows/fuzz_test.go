package csvrows

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReader checks the reader never panics or hangs, and every record yields
// either one value per header or an error.
func FuzzReader(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.csv"))
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("a,b\n\"x\n\"\"y\",z\r1,\"2\"\"\"\r\n"))
	f.Add([]byte("a\n\"\n\"\n\"\n"))
	f.Add(sjis(f, "年度,保険者名\r\n2024,\"協会\r\nけんぽ\"\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data), Options{MaxFieldBytes: 64, MaxColumns: 16, MaxRowBytes: 256})
		if err != nil {
			if !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrNoHeader) && !errors.Is(err, ErrBinary) &&
				!errors.Is(err, ErrTooManyColumns) && !errors.Is(err, ErrDuplicateHeader) {
				t.Fatalf("NewReader error without a sentinel: %v", err)
			}
			return
		}
		headers := r.Headers()
		if len(headers) == 0 || len(headers) > 16 {
			t.Fatalf("headers = %q", headers)
		}
		lastLine := 0
		// Every record consumes at least one byte, and a resync replays bytes
		// after a line break already counted, so rows are bounded by the size.
		for i := 0; ; i++ {
			if i > len(data)+1 {
				t.Fatalf("more rows than bytes: reader loops")
			}
			row, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if row.Number != i+1 || row.Line <= lastLine {
				t.Fatalf("row %d: Number %d Line %d after line %d", i+1, row.Number, row.Line, lastLine)
			}
			lastLine = row.Line
			if row.Err != nil {
				var re *RecordError
				if !errors.As(row.Err, &re) || re.Line != row.Line {
					t.Fatalf("row error %v is not a RecordError for line %d", row.Err, row.Line)
				}
				continue
			}
			if len(row.Fields) != len(headers) {
				t.Fatalf("row %d has %d fields, want %d", row.Number, len(row.Fields), len(headers))
			}
			for _, h := range headers {
				if _, ok := row.Fields[h]; !ok {
					t.Fatalf("row %d lacks %q", row.Number, h)
				}
			}
		}
	})
}
