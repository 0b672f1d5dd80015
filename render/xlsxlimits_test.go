package render

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"
)

// rezip copies the parts of an xlsx, replacing the one named by with by's result.
func rezip(t *testing.T, src []byte, name string, replace func(zw *zip.Writer)) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(src), int64(len(src)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) { return flate.NewWriter(w, flate.BestSpeed) })
	for _, f := range zr.File {
		if f.Name == name {
			replace(zw)
			continue
		}
		if err := zw.Copy(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// allocated returns the bytes fn allocates.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestTemplateBombRefused(t *testing.T) {
	// Not parallel: it measures allocations.
	base := buildTemplate(t)
	const sheetBytes = 300 << 20
	// A 300 MB sheet that deflates to a few hundred KB, as in the report.
	bomb := rezip(t, base, "xl/worksheets/sheet1.xml", func(zw *zip.Writer) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: "xl/worksheets/sheet1.xml", Method: zip.Deflate})
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, `<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>`)
		chunk := bytes.Repeat([]byte("{{x}}"), 1<<14)
		for n := 0; n < sheetBytes; n += len(chunk) {
			w.Write(chunk)
		}
		io.WriteString(w, `</t></is></c></row></sheetData></worksheet>`)
	})
	if len(bomb) > 2<<20 {
		t.Fatalf("bomb is %d bytes, want a small file", len(bomb))
	}
	var err error
	n := allocated(func() { _, err = CheckTemplate(bomb, TemplateLimits{}) })
	if !errors.Is(err, ErrTemplateTooBig) || !strings.Contains(err.Error(), "uncompressed") {
		t.Errorf("bomb: %v, want ErrTemplateTooBig for its uncompressed size", err)
	}
	if n > 8<<20 {
		t.Errorf("checking the bomb allocated %d MB", n>>20)
	}

	// The same sheet declaring a small size: reading stops at the declared size.
	var sheet bytes.Buffer
	fw, _ := flate.NewWriter(&sheet, flate.BestSpeed)
	io.WriteString(fw, `<worksheet><sheetData>`)
	fw.Write(bytes.Repeat([]byte("<row/>"), 20<<20/6))
	io.WriteString(fw, `</sheetData></worksheet>`)
	fw.Close()
	liar := rezip(t, base, "xl/worksheets/sheet1.xml", func(zw *zip.Writer) {
		w, err := zw.CreateRaw(&zip.FileHeader{Name: "xl/worksheets/sheet1.xml", Method: zip.Deflate,
			CRC32: crc32.ChecksumIEEE(nil), CompressedSize64: uint64(sheet.Len()), UncompressedSize64: 1000})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(sheet.Bytes())
	})
	n = allocated(func() { _, err = CheckTemplate(liar, TemplateLimits{}) })
	if !errors.Is(err, ErrBadTemplate) {
		t.Errorf("lying sizes: %v, want ErrBadTemplate", err)
	}
	if n > 8<<20 {
		t.Errorf("checking the lying template allocated %d MB", n>>20)
	}
}

func TestTemplateLimits(t *testing.T) {
	t.Parallel()
	tpl := buildTemplate(t)
	if _, err := CheckTemplate(tpl, TemplateLimits{}); err != nil {
		t.Fatalf("the test template is refused: %v", err)
	}
	many := excelize.NewFile()
	for i := range 50 {
		many.SetCellStr("Sheet1", cellRef(1, i+1), "{{a}}")
		many.SetCellInt("Sheet1", cellRef(2, i+1), int64(i))
	}
	var buf bytes.Buffer
	many.WriteTo(&buf)
	many.Close()
	for _, tc := range []struct {
		name   string
		data   []byte
		limits TemplateLimits
		want   string
	}{
		{"file size", tpl, TemplateLimits{MaxBytes: 1000}, "bytes (limit 1000 bytes)"},
		{"uncompressed", tpl, TemplateLimits{MaxUncompressedBytes: 5000}, "uncompressed"},
		{"cells", buf.Bytes(), TemplateLimits{MaxCells: 99}, "more than 99 cells"},
		{"placeholders", buf.Bytes(), TemplateLimits{MaxPlaceholders: 49}, "more than 49 cells with placeholders"},
	} {
		_, err := CheckTemplate(tc.data, tc.limits)
		if !errors.Is(err, ErrTemplateTooBig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrTemplateTooBig saying %q", tc.name, err, tc.want)
		}
	}
	if names, err := CheckTemplate(buf.Bytes(), TemplateLimits{MaxCells: 100, MaxPlaceholders: 50}); err != nil || len(names) != 1 {
		t.Errorf("at the limits: %q, %v", names, err)
	}
}

// TestXLSXBigRowStreams renders a row whose sheet inflates to megabytes: the
// sheet is deflated as it is written, never held whole.
func TestXLSXBigRowStreams(t *testing.T) {
	tpl := excelize.NewFile()
	for i := range 200 {
		tpl.SetCellStr("Sheet1", cellRef(1, i+1), "{{a}}")
	}
	var buf bytes.Buffer
	tpl.WriteTo(&buf)
	tpl.Close()
	x, err := NewXLSXTemplate(buf.Bytes(), TemplateLimits{})
	if err != nil {
		t.Fatal(err)
	}
	row := Row{Number: 1, Fields: map[string]string{"a": strings.Repeat("長い値", maxCellChars/3)}}
	var out bytes.Buffer
	n := allocated(func() {
		if err := x.Render(context.Background(), &out, row); err != nil {
			t.Fatal(err)
		}
	})
	zr, err := zip.NewReader(bytes.NewReader(out.Bytes()), int64(out.Len()))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		if f.Name == "xl/worksheets/sheet1.xml" && (f.Method != zip.Deflate || f.UncompressedSize64 < 200*maxCellChars) {
			t.Errorf("sheet: method %d, %d bytes", f.Method, f.UncompressedSize64)
		}
	}
	if n > 4<<20 {
		t.Errorf("a %d MB sheet allocated %d MB to render", 200*maxCellChars*3>>20, n>>20)
	}
	f := openXLSX(t, out.Bytes())
	if got, _ := f.GetCellValue("Sheet1", "A200"); got != row.Fields["a"] {
		t.Errorf("A200 holds %d characters", len([]rune(got)))
	}
}
