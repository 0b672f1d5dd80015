package jobs_test

import (
	"archive/zip"
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/pdftest"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/render"
)

// outputCSV has three good rows with Japanese text, a quoted line break and
// leading zeros.
const outputCSV = "個別識別番号,保険者名,年度\r\n000123,全国健康保険協会,2024\r\nA-0002,\"大阪\n保険\",2025\r\nＢ-３,札幌保険組合,令和7年\r\n"

var outputRows = []map[string]string{
	{"個別識別番号": "000123", "保険者名": "全国健康保険協会", "年度": "2024"},
	{"個別識別番号": "A-0002", "保険者名": "大阪\n保険", "年度": "2025"},
	{"個別識別番号": "Ｂ-３", "保険者名": "札幌保険組合", "年度": "令和7年"},
}

var outputHeaders = []string{"個別識別番号", "保険者名", "年度"}

// doneFiles checks the manifest lists rows 1..n done and returns their files.
func doneFiles(t *testing.T, files map[string][]byte, n int) [][]byte {
	t.Helper()
	m := manifestRows(t, files)
	if len(m) != n || len(files) != n+1 {
		t.Fatalf("manifest %v, zip %v", m, names(files))
	}
	out := make([][]byte, n)
	for i := 1; i <= n; i++ {
		if m[i][1] != "done" || m[i][2] != "" {
			t.Fatalf("row %d: %q", i, m[i])
		}
		out[i-1] = files[m[i][0]]
		if out[i-1] == nil {
			t.Fatalf("row %d: %s not in the zip %v", i, m[i][0], names(files))
		}
	}
	return out
}

func TestPipelineXLSX(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	id := e.newReport(models.ReportTypeXLSX)
	e.split(outputCSV, "xlsx", id)
	rep := e.completed(id, 30*time.Second)
	checkOutputXLSX(t, e.readZip(rep.File))
	// "default" (the Rails form's default type) renders the same way.
	id = e.newReport(models.ReportTypeXLSX)
	e.split(outputCSV, "default", id)
	rep = e.completed(id, 30*time.Second)
	for _, n := range names(e.readZip(rep.File)) {
		if !strings.HasSuffix(n, ".xlsx") {
			t.Errorf("default type made %s", n)
		}
	}
}

func TestPipelinePDF(t *testing.T) {
	t.Parallel()
	p, err := render.NewPDF(render.PDFOptions{})
	if err != nil {
		t.Fatalf("NewPDF (install fonts-ipafont-gothic): %v", err)
	}
	e := newEnvWith(t, envOptions{renderers: []render.Renderer{p}})
	id := e.newReport(models.ReportTypePDF)
	e.split(outputCSV, "pdf", id)
	rep := e.completed(id, 30*time.Second)
	files := e.readZip(rep.File)
	for i, data := range doneFiles(t, files, len(outputRows)) {
		text := strings.Join(strings.Fields(pdftest.Text(t, data)), "")
		for _, h := range outputHeaders {
			want := h + strings.Join(strings.Fields(outputRows[i][h]), "") // name cell, then value cell
			if !strings.Contains(text, want) {
				t.Errorf("row %d: PDF text lacks %q:\n%s", i+1, want, text)
			}
		}
	}
}

func TestPipelineXLSXTemplate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	tpl := excelize.NewFile()
	sheet := tpl.GetSheetName(0)
	cells := map[string]string{
		"A1": "被保険者証明書",
		"A2": "番号", "B2": "{{個別識別番号}}",
		"A3": "保険者", "B3": "{{保険者名}}様",
		"A4": "年度", "B4": "{{年度}}年度 ({{個別識別番号}})",
		"A5": "{{存在しない列}}",
	}
	for cell, v := range cells {
		if err := tpl.SetCellStr(sheet, cell, v); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := tpl.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Put(ctx, "templates/t.xlsx", &buf); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Put(ctx, "uploads/t.csv", strings.NewReader(outputCSV)); err != nil {
		t.Fatal(err)
	}
	id := e.newReport(models.ReportTypeXLSX)
	e.split(contract.SourceRef{SourceKey: "uploads/t.csv", TemplateKey: "templates/t.xlsx"}, "xlsx", id)
	rep := e.completed(id, 30*time.Second)
	for i, data := range doneFiles(t, e.readZip(rep.File), len(outputRows)) {
		f, err := excelize.OpenReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("row %d: %v", i+1, err)
		}
		r := outputRows[i]
		want := map[string]string{
			"A1": "被保険者証明書",
			"A2": "番号", "B2": r["個別識別番号"],
			"A3": "保険者", "B3": r["保険者名"] + "様",
			"A4": "年度", "B4": r["年度"] + "年度 (" + r["個別識別番号"] + ")",
			"A5": "",
		}
		for cell, w := range want {
			got, err := f.GetCellValue(sheet, cell)
			if err != nil || got != w {
				t.Errorf("row %d %s: %q (%v), want %q", i+1, cell, got, err, w)
			}
		}
		f.Close()
	}
}

// checkOutputXLSX checks a ZIP made from outputCSV with the default XLSX
// layout: every cell of every row's workbook.
func checkOutputXLSX(t *testing.T, files map[string][]byte) {
	t.Helper()
	for i, data := range doneFiles(t, files, len(outputRows)) {
		f, err := excelize.OpenReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("row %d: open xlsx: %v", i+1, err)
		}
		got, err := f.GetRows(render.DefaultSheet)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(outputHeaders) {
			t.Fatalf("row %d: %d sheet rows: %q", i+1, len(got), got)
		}
		for k, h := range outputHeaders {
			want := []string{h, outputRows[i][h]}
			if len(got[k]) != 2 || got[k][0] != want[0] || got[k][1] != want[1] {
				t.Errorf("row %d line %d: %q, want %q", i+1, k+1, got[k], want)
			}
		}
	}
}

// TestPipelineXLSXTemplateRefused: a template that reaches the row jobs
// without the upload's check (Rails stored it) and is no workbook fails
// every row with the reason, and the report still completes.
func TestPipelineXLSXTemplateRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("word/document.xml")
	w.Write([]byte("<doc/>"))
	zw.Close()
	if err := e.store.Put(ctx, "templates/bad.xlsx", &buf); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Put(ctx, "uploads/bad.csv", strings.NewReader(outputCSV)); err != nil {
		t.Fatal(err)
	}
	id := e.newReport(models.ReportTypeXLSX)
	e.split(contract.SourceRef{SourceKey: "uploads/bad.csv", TemplateKey: "templates/bad.xlsx"}, "xlsx", id)
	rep := e.completed(id, 30*time.Second)
	m := manifestRows(t, e.readZip(rep.File))
	for n := 1; n <= len(outputRows); n++ {
		if m[n][1] != "failed" || !strings.Contains(m[n][2], "not an xlsx template: no xl/workbook.xml") {
			t.Errorf("row %d: %q, want failed naming the bad template", n, m[n])
		}
	}
}
