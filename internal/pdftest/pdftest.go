// Package pdftest reads back the text of PDFs that tests produce.
package pdftest

import (
	"bytes"
	"image"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ledongthuc/pdf"
)

// Text extracts the text of a PDF with ledongthuc/pdf, which decodes the
// ToUnicode CMap the renderer writes for the embedded subset font, so Japanese text
// comes back as Unicode only if the font was really embedded and mapped.
func Text(tb testing.TB, data []byte) string {
	tb.Helper()
	rd, err := pdf.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		tb.Fatalf("open pdf: %v", err)
	}
	r, err := rd.GetPlainText()
	if err != nil {
		tb.Fatalf("extract pdf text: %v", err)
	}
	var b strings.Builder
	if _, err := io.Copy(&b, r); err != nil {
		tb.Fatal(err)
	}
	return b.String()
}

// PageTexts returns the text of each page, in order.
func PageTexts(tb testing.TB, data []byte) []string {
	tb.Helper()
	rd, err := pdf.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		tb.Fatalf("open pdf: %v", err)
	}
	out := make([]string, rd.NumPage())
	for i := range out {
		p := rd.Page(i + 1)
		if p.V.IsNull() {
			tb.Fatalf("page %d missing", i+1)
		}
		text, err := p.GetPlainText(nil)
		if err != nil {
			tb.Fatalf("page %d text: %v", i+1, err)
		}
		out[i] = text
	}
	return out
}

// Render draws every page of a PDF as a PNG with poppler's pdftoppm (Debian
// poppler-utils) at dpi and returns the decoded images and their files (in a
// test temp dir, to look at when a test fails).
func Render(tb testing.TB, data []byte, dpi int) ([]image.Image, []string) {
	tb.Helper()
	bin, err := exec.LookPath("pdftoppm")
	if err != nil {
		tb.Fatalf("pdftoppm not found (apt-get install poppler-utils): %v", err)
	}
	dir := tb.TempDir()
	in := filepath.Join(dir, "in.pdf")
	if err := os.WriteFile(in, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	out, err := exec.Command(bin, "-r", strconv.Itoa(dpi), "-png", in, filepath.Join(dir, "page")).CombinedOutput()
	if err != nil {
		tb.Fatalf("pdftoppm: %v: %s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "page-*.png"))
	sort.Strings(files) // page-1 … page-9 pad to the same width (page-01 when 10+)
	var imgs []image.Image
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			tb.Fatal(err)
		}
		img, err := png.Decode(fh)
		fh.Close()
		if err != nil {
			tb.Fatalf("decode %s: %v", f, err)
		}
		imgs = append(imgs, img)
	}
	return imgs, files
}
