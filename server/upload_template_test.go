package server

import (
	"archive/zip"
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

	"github.com/pallarel/pallarel/render"
)

// xlsxTemplate builds a real XLSX template with n placeholder cells.
func xlsxTemplate(t *testing.T, n int) []byte {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	for i := range n {
		cell, _ := excelize.CoordinatesToCellName(1, i+1)
		f.SetCellStr("Sheet1", cell, "{{col}}")
	}
	var buf bytes.Buffer
	if _, err := f.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUploadTemplateChecked(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *Deps) { d.TemplateLimits = render.TemplateLimits{MaxPlaceholders: 10} })
	ctx := context.Background()
	// A zip of the right size that is no workbook.
	var notBook bytes.Buffer
	zw := zip.NewWriter(&notBook)
	w, _ := zw.Create("word/document.xml")
	w.Write([]byte("<doc/>"))
	zw.Close()
	// A sheet declaring 300 MB inflated (a template bomb): refused from the
	// zip's directory, before anything is inflated.
	var bomb bytes.Buffer
	zw = zip.NewWriter(&bomb)
	for _, name := range []string{"xl/workbook.xml", "xl/worksheets/sheet1.xml"} {
		size := uint64(10)
		if name == "xl/worksheets/sheet1.xml" {
			size = 300 << 20
		}
		w, err := zw.CreateRaw(&zip.FileHeader{Name: name, Method: zip.Store, CompressedSize64: 10, UncompressedSize64: size})
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("<x></x>   "))
	}
	zw.Close()
	tests := []struct {
		name     string
		template []byte
		want     int
		msg      string
	}{
		{"fine", xlsxTemplate(t, 10), http.StatusCreated, ""},
		{"too many placeholders", xlsxTemplate(t, 11), http.StatusRequestEntityTooLarge, "The template is too large. (more than 10 cells with placeholders)"},
		{"bomb", bomb.Bytes(), http.StatusRequestEntityTooLarge, "The template is too large. (more than 64 MiB uncompressed)"},
		{"zip but not xlsx", notBook.Bytes(), http.StatusUnprocessableEntity, "The template must be an XLSX file. (no xl/workbook.xml)"},
		{"too many bytes", append(xlsxTemplate(t, 1), make([]byte, render.DefaultTemplateMaxBytes)...), http.StatusRequestEntityTooLarge, "The template is too large."},
	}
	for _, tt := range tests {
		body, ctype := multipartBody(t, part{name: "csv_file", file: "a.csv", value: "col\nx\n"}, part{name: "template", file: "t.xlsx", value: string(tt.template)})
		resp, out := b.do(t, http.MethodPost, "/csv_processing", body, "Content-Type", ctype, "Accept", "application/json", "Accept-Language", "en")
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d (%.300s)", tt.name, resp.StatusCode, tt.want, out)
			continue
		}
		if tt.msg != "" && !strings.Contains(out, tt.msg) {
			t.Errorf("%s: answer %.300s lacks %q", tt.name, out, tt.msg)
		}
	}
	// Only the accepted upload left files behind.
	if infos, _ := b.store.List(ctx, "templates/"); len(infos) != 1 {
		t.Errorf("templates stored: %v", infos)
	}
}

func TestUploadRefusesPDFWithoutFont(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *Deps) { d.ReportTypes = []string{"xlsx", "text"} })
	resp, out := b.get(t, "/")
	wantStatus(t, resp, out, http.StatusOK)
	if strings.Contains(out, `value="pdf"`) || !strings.Contains(out, `value="xlsx"`) {
		t.Errorf("the form offers PDF without a font: %.800s", out)
	}
	for _, order := range [][]part{
		{{name: "csv_type", value: "pdf"}, {name: "csv_file", file: "a.csv", value: sampleCSV}},
		{{name: "csv_file", file: "a.csv", value: sampleCSV}, {name: "csv_type", value: "pdf"}},
	} {
		body, ctype := multipartBody(t, order...)
		resp, out := b.do(t, http.MethodPost, "/csv_processing", body, "Content-Type", ctype, "Accept", "application/json", "Accept-Language", "en")
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(out, "not available") {
			t.Errorf("pdf upload without a font: %d %.300s", resp.StatusCode, out)
		}
	}
	if infos, _ := b.store.List(context.Background(), "uploads/"); len(infos) != 0 {
		t.Errorf("uploads kept: %v", infos)
	}
}
