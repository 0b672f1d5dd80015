package csvrows

import (
	"io"
	"runtime"
	"strconv"
	"testing"
)

// rowGenerator produces about size bytes of CSV (whole rows) without ever holding them: a header
// then numbered Japanese rows, with a quoted multi-line cell every 7th row.
type rowGenerator struct {
	size, produced int64
	n              int
	buf            []byte
}

func (g *rowGenerator) Read(p []byte) (int, error) {
	if g.produced >= g.size && len(g.buf) == 0 {
		return 0, io.EOF
	}
	for len(g.buf) < len(p) && g.produced+int64(len(g.buf)) < g.size {
		if g.n == 0 {
			g.buf = append(g.buf, "個別識別番号,保険者名,年度\r\n"...)
		} else {
			g.buf = strconv.AppendInt(g.buf, int64(g.n), 10)
			if g.n%7 == 0 {
				g.buf = append(g.buf, ",\"全国健康保険協会\r\n東京支部, \"\"本部\"\"\",2024\r\n"...)
			} else {
				g.buf = append(g.buf, ",全国健康保険協会 東京支部,2024\r\n"...)
			}
		}
		g.n++
	}
	n := copy(p, g.buf)
	g.buf = g.buf[:copy(g.buf, g.buf[n:])]
	g.produced += int64(n)
	return n, nil
}

// TestReaderMemoryFlat reads a 200 MB generated stream and samples the heap:
// a streaming reader stays far below the input size.
func TestReaderMemoryFlat(t *testing.T) {
	size := int64(200 << 20)
	if testing.Short() {
		size = 20 << 20
	}
	const limit = 32 << 20
	r, err := NewReader(&rowGenerator{size: size}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ms runtime.MemStats
	var peak uint64
	rows := 0
	for {
		row, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rows++
		if row.Err != nil {
			t.Fatalf("row %d: %v", row.Number, row.Err)
		}
		if rows%20000 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
	}
	runtime.ReadMemStats(&ms)
	peak = max(peak, ms.HeapInuse)
	t.Logf("%d rows from %d MB, peak HeapInuse %.1f MiB", rows, size>>20, float64(peak)/(1<<20))
	if rows < 1000 {
		t.Fatalf("only %d rows read", rows)
	}
	if peak > limit {
		t.Fatalf("peak HeapInuse %d bytes > %d: the reader is buffering", peak, limit)
	}
}
