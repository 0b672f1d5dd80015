package render

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ledongthuc/pdf"

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
	long := strings.Repeat("長い説明文です。", 60) // wraps over many lines
	row := Row{Number: 42, Headers: jpHeaders, Fields: map[string]string{
		"個別識別番号": "000123", "保険者名": "全国健康保険協会\n東京支部", "年度": "2024", "備考": long,
	}}
	row.Headers = append(append([]string{}, jpHeaders...), "備考")
	var buf bytes.Buffer
	if err := p.Render(context.Background(), &buf, row); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte("%PDF-")) {
		t.Fatalf("not a PDF: %q", buf.Bytes()[:min(20, buf.Len())])
	}
	text := pdftest.Text(t, buf.Bytes())
	flat := strings.Join(strings.Fields(text), "")
	for _, want := range []string{"Reportrow42", "個別識別番号:000123", "保険者名:全国健康保険協会", "東京支部", "年度:2024", "備考:長い説明文です。"} {
		if !strings.Contains(flat, want) {
			t.Errorf("PDF text lacks %q:\n%s", want, text)
		}
	}
	// Wrapped, the long value must still come out whole.
	if got := strings.Count(flat, "長い説明文です。"); got != 60 {
		t.Errorf("long value appears %d times, want 60", got)
	}
	if !bytes.Contains(buf.Bytes(), []byte("/FontFile2")) {
		t.Error("the TrueType font is not embedded")
	}
}

func TestPDFManyPages(t *testing.T) {
	t.Parallel()
	p := newTestPDF(t)
	row := Row{Number: 1, Fields: map[string]string{}}
	for i := range 200 {
		h := "列" + strings.Repeat("あ", i%5) + string(rune('A'+i%26)) + string(rune('a'+i/26))
		row.Headers = append(row.Headers, h)
		row.Fields[h] = "値"
	}
	var buf bytes.Buffer
	if err := p.Render(context.Background(), &buf, row); err != nil {
		t.Fatal(err)
	}
	rd, err := pdf.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if rd.NumPage() < 3 {
		t.Errorf("200 lines fit on %d pages, want page breaks", rd.NumPage())
	}
	if got := strings.Count(pdftest.Text(t, buf.Bytes()), "値"); got != 200 {
		t.Errorf("found %d values, want 200", got)
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
