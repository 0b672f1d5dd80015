package render

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"
)

func openXLSX(t *testing.T, data []byte) *excelize.File {
	t.Helper()
	f, err := excelize.OpenReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("open rendered xlsx: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestXLSXDefault(t *testing.T) {
	t.Parallel()
	row := Row{Number: 7, Headers: jpHeaders, Fields: map[string]string{
		"個別識別番号": "000123", "保険者名": "全国健康保険協会\n東京支部", "年度": "2024", "extra": "x",
	}}
	var buf bytes.Buffer
	if err := NewXLSX().Render(context.Background(), &buf, row); err != nil {
		t.Fatal(err)
	}
	f := openXLSX(t, buf.Bytes())
	if got := f.GetSheetList(); len(got) != 1 || got[0] != DefaultSheet {
		t.Fatalf("sheets = %q", got)
	}
	rows, err := f.GetRows(DefaultSheet)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"個別識別番号", "000123"},
		{"保険者名", "全国健康保険協会\n東京支部"},
		{"年度", "2024"},
		{"extra", "x"}, // not in Headers: after them
	}
	if len(rows) != len(want) {
		t.Fatalf("rows = %q", rows)
	}
	for i, w := range want {
		if len(rows[i]) != 2 || rows[i][0] != w[0] || rows[i][1] != w[1] {
			t.Errorf("row %d = %q, want %q", i+1, rows[i], w)
		}
		a, _ := excelize.CoordinatesToCellName(1, i+1)
		b, _ := excelize.CoordinatesToCellName(2, i+1)
		// Values are text cells: "000123" must not become the number 123.
		if typ, _ := f.GetCellType(DefaultSheet, b); typ != excelize.CellTypeSharedString && typ != excelize.CellTypeInlineString {
			t.Errorf("%s type = %v, want a string", b, typ)
		}
		styleID, _ := f.GetCellStyle(DefaultSheet, a)
		style, err := f.GetStyle(styleID)
		if err != nil || style.Font == nil || !style.Font.Bold {
			t.Errorf("%s is not bold", a)
		}
		styleID, _ = f.GetCellStyle(DefaultSheet, b)
		if style, _ := f.GetStyle(styleID); style != nil && style.Font != nil && style.Font.Bold {
			t.Errorf("%s is bold", b)
		}
	}
}

func buildTemplate(t *testing.T) []byte {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	f.SetCellStr("Sheet1", "A1", "保険者別レポート") // static
	f.SetCellStr("Sheet1", "A2", "識別番号")
	f.SetCellStr("Sheet1", "B2", "{{個別識別番号}}")
	f.SetCellStr("Sheet1", "A3", "年度")
	f.SetCellStr("Sheet1", "B3", "{{ 年度 }}年度 / {{保険者名}}")
	f.SetCellStr("Sheet1", "B4", "{{存在しない列}}")
	f.SetCellInt("Sheet1", "C1", 99)
	style, err := f.NewStyle(&excelize.Style{Font: &excelize.Font{Italic: true}})
	if err != nil {
		t.Fatal(err)
	}
	f.SetCellStyle("Sheet1", "B2", "B2", style)
	if _, err := f.NewSheet("控え"); err != nil {
		t.Fatal(err)
	}
	f.SetCellStr("控え", "D5", "番号={{個別識別番号}}")
	var buf bytes.Buffer
	if _, err := f.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestXLSXTemplate(t *testing.T) {
	t.Parallel()
	x, err := NewXLSXTemplate(buildTemplate(t))
	if err != nil {
		t.Fatal(err)
	}
	names, err := x.Placeholders()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "個別識別番号,年度,保険者名,存在しない列" {
		t.Errorf("Placeholders = %q", names)
	}
	row := Row{Number: 1, Headers: jpHeaders, Fields: map[string]string{"個別識別番号": "000123", "保険者名": "協会けんぽ", "年度": "2024"}}
	var buf bytes.Buffer
	if err := x.Render(context.Background(), &buf, row); err != nil {
		t.Fatal(err)
	}
	f := openXLSX(t, buf.Bytes())
	cells := []struct{ sheet, cell, want string }{
		{"Sheet1", "A1", "保険者別レポート"},
		{"Sheet1", "A2", "識別番号"},
		{"Sheet1", "B2", "000123"},
		{"Sheet1", "B3", "2024年度 / 協会けんぽ"},
		{"Sheet1", "B4", ""},
		{"Sheet1", "C1", "99"},
		{"控え", "D5", "番号=000123"},
	}
	for _, c := range cells {
		got, err := f.GetCellValue(c.sheet, c.cell)
		if err != nil || got != c.want {
			t.Errorf("%s!%s = %q (%v), want %q", c.sheet, c.cell, got, err, c.want)
		}
	}
	styleID, _ := f.GetCellStyle("Sheet1", "B2")
	if style, err := f.GetStyle(styleID); err != nil || style.Font == nil || !style.Font.Italic {
		t.Error("B2 lost its template style")
	}
	if typ, _ := f.GetCellType("Sheet1", "C1"); typ != excelize.CellTypeNumber && typ != excelize.CellTypeUnset {
		t.Errorf("static number cell type = %v", typ)
	}

	// The template itself is untouched: a second row renders from the original.
	row.Fields["個別識別番号"] = "000456"
	buf.Reset()
	if err := x.Render(context.Background(), &buf, row); err != nil {
		t.Fatal(err)
	}
	if got, _ := openXLSX(t, buf.Bytes()).GetCellValue("Sheet1", "B2"); got != "000456" {
		t.Errorf("second render B2 = %q", got)
	}
}

func TestXLSXTemplateInvalid(t *testing.T) {
	t.Parallel()
	if _, err := NewXLSXTemplate([]byte("not a zip")); err == nil {
		t.Fatal("garbage template accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := NewXLSX().Render(ctx, &bytes.Buffer{}, Row{}); err == nil {
		t.Error("canceled render succeeded")
	}
}
