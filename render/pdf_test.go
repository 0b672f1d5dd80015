package render

import (
	"bytes"
	"context"
	"errors"
	"image"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pallarel/pallarel/internal/pdftest"
)

func newTestPDF(t *testing.T) *PDF {
	t.Helper()
	p, err := NewPDF(PDFOptions{})
	if err != nil {
		t.Fatalf("NewPDF (install the Debian package fonts-ipafont-gothic): %v", err)
	}
	return p
}

func TestPDFJapanese(t *testing.T) {
	t.Parallel()
	p := newTestPDF(t)
	row := Row{Number: 42, Headers: append(append([]string{}, jpHeaders...), "郵便番号[text]"), Fields: map[string]string{
		"個別識別番号": "000123", "保険者名": "全国健康保険協会\n東京支部", "年度": "2024", "郵便番号[text]": "100-0001",
	}}
	var buf bytes.Buffer
	if err := p.Render(context.Background(), &buf, row); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte("%PDF-")) {
		t.Fatalf("not a PDF: %q", buf.Bytes()[:min(20, buf.Len())])
	}
	pages := pdftest.PageTexts(t, buf.Bytes())
	if len(pages) != 1 {
		t.Fatalf("%d pages, want 1", len(pages))
	}
	// Text comes back in drawing order: title, then each name before its value.
	flat := strings.Join(strings.Fields(pages[0]), "")
	want := "Reportrow42個別識別番号000123保険者名全国健康保険協会東京支部年度2024郵便番号100-0001"
	if flat != want {
		t.Errorf("page text = %q, want %q", flat, want)
	}
	if strings.Contains(flat, "1/1") {
		t.Error("a one-page row has a page number")
	}
	if !bytes.Contains(buf.Bytes(), []byte("/FontFile2")) {
		t.Error("the TrueType font is not embedded")
	}

	// The page as a person sees it: the title at the top, the grey name
	// column on the left, dark text in both columns, the rest of the page white.
	imgs, files := pdftest.Render(t, buf.Bytes(), 72)
	if len(imgs) != 1 {
		t.Fatalf("pdftoppm made %d pages", len(imgs))
	}
	img := imgs[0]
	if b := img.Bounds(); b.Dx() != 595 || b.Dy() != 842 {
		t.Errorf("page is %v, want A4 at 72 dpi", b)
	}
	if !dark(img, 40, 40, 300, 62) {
		t.Errorf("no title at the top (%s)", files[0])
	}
	if !grey(img, 165, 72) {
		t.Errorf("no grey name column (%s)", files[0])
	}
	if !dark(img, 40, 70, 180, 200) || !dark(img, 190, 70, 555, 200) {
		t.Errorf("no text in the table's columns (%s)", files[0])
	}
	if dark(img, 40, 400, 555, 800) {
		t.Errorf("ink below the table (%s)", files[0])
	}
}

// dark reports whether the rectangle holds a dark pixel.
func dark(img image.Image, x0, y0, x1, y1 int) bool {
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			if r, g, b, _ := img.At(x, y).RGBA(); r < 0x6000 && g < 0x6000 && b < 0x6000 {
				return true
			}
		}
	}
	return false
}

// grey reports whether the pixel is light grey (the name column's fill).
func grey(img image.Image, x, y int) bool {
	r, g, b, _ := img.At(x, y).RGBA()
	return r == g && g == b && r > 0xd000 && r < 0xf800
}

func TestPDFLongRowPages(t *testing.T) {
	t.Parallel()
	p := newTestPDF(t)
	long := strings.Repeat("長い説明文です。", 600) // longer than a page by itself
	row := Row{Number: 1, Headers: []string{"備考"}, Fields: map[string]string{"備考": long}}
	for i := range 60 {
		h := "列" + strings.Repeat("あ", i%5) + string(rune('A'+i%26)) + string(rune('a'+i/26))
		row.Headers = append(row.Headers, h)
		row.Fields[h] = "値"
	}
	var buf bytes.Buffer
	if err := p.Render(context.Background(), &buf, row); err != nil {
		t.Fatal(err)
	}
	pages := pdftest.PageTexts(t, buf.Bytes())
	if len(pages) < 3 {
		t.Fatalf("%d pages, want the long value and 60 lines over 3 or more", len(pages))
	}
	all := strings.Join(strings.Fields(strings.Join(pages, "")), "")
	if got := strings.Count(all, "長い説明文です。"); got != 600 {
		t.Errorf("long value appears %d times, want 600", got)
	}
	if got := strings.Count(all, "値"); got != 60 {
		t.Errorf("found %d values, want 60", got)
	}
	for i, text := range pages {
		flat := strings.Join(strings.Fields(text), "")
		if want := strconv.Itoa(i+1) + "/" + strconv.Itoa(len(pages)); !strings.HasSuffix(flat, want) {
			t.Errorf("page %d does not end with its number %q: …%s", i+1, want, flat[max(0, len(flat)-40):])
		}
		if i > 0 && i < len(pages)-1 && !strings.Contains(flat, "備考") && !strings.Contains(flat, "列") {
			t.Errorf("page %d has no column name", i+1)
		}
	}
	imgs, files := pdftest.Render(t, buf.Bytes(), 100)
	if len(imgs) != len(pages) {
		t.Errorf("pdftoppm made %d pages, the text reader %d", len(imgs), len(pages))
	}
	for i, img := range imgs {
		// The number sits in the bottom margin, centred (100 dpi: 1 pt is 1.39 px).
		if b := img.Bounds(); !dark(img, b.Dx()/2-40, b.Dy()-90, b.Dx()/2+40, b.Dy()-30) {
			t.Errorf("page %d has no page number at the foot (%s)", i+1, files[i])
		}
	}
}

func TestPDFMissingGlyphAndControls(t *testing.T) {
	t.Parallel()
	p := newTestPDF(t)
	row := Row{Number: 3, Headers: []string{"a"}, Fields: map[string]string{"a": "x\x00y\tz😀\xff"}}
	var buf bytes.Buffer
	if err := p.Render(context.Background(), &buf, row); err != nil {
		t.Fatal(err)
	}
	if text := pdftest.Text(t, buf.Bytes()); !strings.Contains(text, "x y z") {
		t.Errorf("text = %q", text)
	}
}

func TestPDFConcurrent(t *testing.T) {
	t.Parallel()
	p := newTestPDF(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	outs := make([]bytes.Buffer, 4)
	for i := range 4 {
		wg.Go(func() {
			row := Row{Number: i + 1, Headers: []string{"保険者名"}, Fields: map[string]string{"保険者名": "協会" + strings.Repeat("け", i+1)}}
			errs[i] = p.Render(context.Background(), &outs[i], row)
		})
	}
	wg.Wait()
	for i := range 4 {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		want := "協会" + strings.Repeat("け", i+1)
		if text := pdftest.Text(t, outs[i].Bytes()); !strings.Contains(text, want) {
			t.Errorf("render %d: text %q lacks %q", i, text, want)
		}
	}
}

func TestPDFFontErrors(t *testing.T) {
	t.Parallel()
	_, err := NewPDF(PDFOptions{FontPath: "/nonexistent/font.ttf"})
	if !errors.Is(err, ErrNoFont) || !strings.Contains(err.Error(), "/nonexistent/font.ttf") {
		t.Errorf("missing font: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.ttf")
	os.WriteFile(bad, []byte("not a font"), 0o600)
	if _, err := NewPDF(PDFOptions{FontPath: bad}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad font: %v", err)
	}
	p := newTestPDF(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Render(ctx, &bytes.Buffer{}, Row{Number: 1}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled render: %v", err)
	}
}

func BenchmarkPDF(b *testing.B) {
	p, err := NewPDF(PDFOptions{})
	if err != nil {
		b.Fatal(err)
	}
	row := Row{Number: 1, Headers: []string{"個別識別番号", "保険者名", "年度", "氏名", "生年月日", "請求金額", "備考"}, Fields: map[string]string{
		"個別識別番号": "ID-00000001", "保険者名": "保険者1", "年度": "2001", "氏名": "山田 太郎1", "生年月日": "1941-02-02", "請求金額": "1007", "備考": "特記事項なし",
	}}
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if err := p.Render(context.Background(), &buf, row); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len()), "bytes/file")
}
