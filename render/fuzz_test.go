package render

import (
	"archive/zip"
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/pallarel/pallarel/internal/pdftest"
)

// FuzzClassify checks the typing rule's promises on any value: the text is
// kept, a number reads back as the value it came from, and what KindAuto
// makes a number never had a leading zero or more than 11 integer digits.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"2024", "0600001", "-1234.50", "2024-04-01", "2024年4月1日", "=1+2", "", "1e5", "-0", "0.0001", "99999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, kind := range []CellKind{KindAuto, KindText, KindNumber, KindDate} {
			c := Classify(v, kind)
			if c.Text != v {
				t.Fatalf("Classify(%q) changed the text to %q", v, c.Text)
			}
			switch c.Kind {
			case KindNumber:
				n, err := strconv.ParseFloat(v, 64)
				if err != nil || n != c.Number {
					t.Fatalf("Classify(%q) = number %v", v, c.Number)
				}
				digits := strings.TrimPrefix(v, "-")
				if i := strings.IndexByte(digits, '.'); i >= 0 {
					digits = digits[:i]
				}
				if kind == KindAuto && (len(digits) > 1 && digits[0] == '0' || len(digits) > maxAutoDigits) {
					t.Fatalf("Classify(%q) made a number that loses its text", v)
				}
			case KindDate:
				if kind == KindText || kind == KindNumber || c.Number < 61 {
					t.Fatalf("Classify(%q, %v) = date %v", v, kind, c.Number)
				}
			case KindText:
			default:
				t.Fatalf("Classify(%q) kind %v", v, c.Kind)
			}
		}
	})
}

// FuzzXLSXTemplate feeds changed templates to the parser: it refuses or
// prepares them, never panics, and a prepared one renders a readable zip.
func FuzzXLSXTemplate(f *testing.F) {
	f.Add(buildTemplate(f))
	f.Add([]byte("PK\x03\x04"))
	f.Fuzz(func(t *testing.T, data []byte) {
		x, err := NewXLSXTemplate(data, TemplateLimits{MaxUncompressedBytes: 4 << 20})
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := x.Render(context.Background(), &buf, Row{Number: 1, Fields: map[string]string{"a": "1", "b": "<&>"}}); err != nil {
			return
		}
		if _, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
			t.Fatalf("rendered file is no zip: %v", err)
		}
	})
}

// FuzzPDF renders any name and value: no error, and a file a PDF reader
// opens with the row's title on its first page.
func FuzzPDF(f *testing.F) {
	p, err := NewPDF(PDFOptions{})
	if err != nil {
		f.Fatalf("NewPDF (install fonts-ipafont-gothic): %v", err)
	}
	f.Add("保険者名", "全国健康保険協会\n東京支部")
	f.Add("a\x00b", "x\ty😀\xff\r\n")
	f.Add("", "")
	f.Add("名", strings.Repeat("長い", 3000))
	f.Fuzz(func(t *testing.T, name, value string) {
		var buf bytes.Buffer
		row := Row{Number: 7, Headers: []string{name}, Fields: map[string]string{name: value}}
		if err := p.Render(context.Background(), &buf, row); err != nil {
			t.Fatal(err)
		}
		pages := pdftest.PageTexts(t, buf.Bytes())
		if len(pages) == 0 || !strings.HasPrefix(strings.Join(strings.Fields(pages[0]), ""), "Reportrow7") {
			t.Fatalf("first page does not start with the title: %q", pages)
		}
	})
}
