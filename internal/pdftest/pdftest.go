// Package pdftest reads back the text of PDFs that tests produce.
package pdftest

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/ledongthuc/pdf"
)

// Text extracts the text of a PDF with ledongthuc/pdf, which decodes the
// ToUnicode CMap gopdf writes for the embedded subset font, so Japanese text
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
