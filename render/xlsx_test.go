package render

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

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

func renderXLSX(t *testing.T, x *XLSX, row Row) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := x.Render(context.Background(), &buf, row); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zipParts reads every part of a zip, checking each entry's date.
func zipParts(t *testing.T, data []byte, after time.Time) map[string]string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string]string{}
	for _, f := range zr.File {
		// MS-DOS times have two-second steps and no zone.
		if m := f.Modified; m.Year() < 2020 || m.After(time.Now().Add(time.Hour*24)) || m.Before(after.Add(-48*time.Hour)) {
			t.Errorf("%s dated %v", f.Name, m)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		parts[f.Name] = string(b)
	}
	return parts
}

// typedRow holds one value of every kind the typing rule tells apart.
var typedRow = []struct {
	header, value string
	typ           excelize.CellType
	raw           string // the cell's stored value
	shown         string // as excelize formats it ("" = raw)
}{
	{"個別識別番号", "0600001", excelize.CellTypeInlineString, "0600001", ""},
	{"保険者名", "全国健康保険協会\n東京支部", excelize.CellTypeInlineString, "全国健康保険協会\n東京支部", ""},
	{"年度", "2024", excelize.CellTypeNumber, "2024", ""},
	{"金額", "-1234.5", excelize.CellTypeNumber, "-1234.5", ""},
	{"単価", "0.25", excelize.CellTypeNumber, "0.25", ""},
	{"請求額", "1500.50", excelize.CellTypeNumber, "1500.5", ""},
	{"受付日", "2024-04-01", excelize.CellTypeNumber, "45383", "2024/04/01"},
	{"和暦日付", "2024年4月1日", excelize.CellTypeNumber, "45383", "2024/04/01"},
	{"更新日時", "2024/04/01 09:30", excelize.CellTypeNumber, "45383.395833333336", "2024/04/01 09:30:00"},
	{"電話番号", "03-1234-5678", excelize.CellTypeInlineString, "03-1234-5678", ""},
	{"携帯", "09012345678", excelize.CellTypeInlineString, "09012345678", ""},
	{"口座ID", "123456789012", excelize.CellTypeInlineString, "123456789012", ""},
	{"長いID", "12345678901234567890", excelize.CellTypeInlineString, "12345678901234567890", ""},
	{"数式", "=HYPERLINK(\"http://x\",\"y\")", excelize.CellTypeInlineString, "=HYPERLINK(\"http://x\",\"y\")", ""},
	{"加算", "+81312345678", excelize.CellTypeInlineString, "+81312345678", ""},
	{"減算", "-1+2", excelize.CellTypeInlineString, "-1+2", ""},
	{"参照", "@SUM(A1)", excelize.CellTypeInlineString, "@SUM(A1)", ""},
	{"無効日付", "2023-02-30", excelize.CellTypeInlineString, "2023-02-30", ""},
	{"空欄", "", excelize.CellTypeUnset, "", ""},
	{"郵便番号[text]", "1000001", excelize.CellTypeInlineString, "1000001", ""},
	{"コード[number]", "00123", excelize.CellTypeNumber, "123", ""},
	{"空白", "  前後に空白  ", excelize.CellTypeInlineString, "  前後に空白  ", ""},
	{"記号", "<a&b>", excelize.CellTypeInlineString, "<a&b>", ""},
}

func typedTestRow() Row {
	row := Row{Number: 7, Fields: map[string]string{"extra": "x"}}
	for _, c := range typedRow {
		row.Headers = append(row.Headers, c.header)
		row.Fields[c.header] = c.value
	}
	return row
}

func TestXLSXDefaultTyped(t *testing.T) {
	t.Parallel()
	start := time.Now()
	data := renderXLSX(t, NewXLSX(), typedTestRow())
	f := openXLSX(t, data)
	if got := f.GetSheetList(); len(got) != 1 || got[0] != DefaultSheet {
		t.Fatalf("sheets = %q", got)
	}
	wantRows := len(typedRow) + 1 // "extra" is not in Headers: after them
	if dim, err := f.GetSheetDimension(DefaultSheet); err != nil || dim != "A1:B"+itoa(wantRows) {
		t.Errorf("dimension = %q (%v), want A1:B%d", dim, err, wantRows)
	}
	for i, c := range typedRow {
		a, b := cellRef(1, i+1), cellRef(2, i+1)
		name, _ := ColumnKind(c.header)
		if got, _ := f.GetCellValue(DefaultSheet, a); got != name {
			t.Errorf("%s = %q, want %q", a, got, name)
		}
		if typ, _ := f.GetCellType(DefaultSheet, b); typ != c.typ {
			t.Errorf("%s (%s=%q) type = %v, want %v", b, c.header, c.value, typ, c.typ)
		}
		if raw, _ := f.GetCellValue(DefaultSheet, b, excelize.Options{RawCellValue: true}); raw != c.raw {
			t.Errorf("%s (%s) raw = %q, want %q", b, c.header, raw, c.raw)
		}
		if c.shown != "" {
			if got, _ := f.GetCellValue(DefaultSheet, b); got != c.shown {
				t.Errorf("%s (%s) shows %q, want %q", b, c.header, got, c.shown)
			}
		}
		if formula, _ := f.GetCellFormula(DefaultSheet, b); formula != "" {
			t.Errorf("%s became the formula %q", b, formula)
		}
		styleID, _ := f.GetCellStyle(DefaultSheet, a)
		if style, err := f.GetStyle(styleID); err != nil || style.Font == nil || !style.Font.Bold {
			t.Errorf("%s is not bold", a)
		}
	}
	// The value on two lines gets a row two lines high; one-line rows keep the default.
	if h, err := f.GetRowHeight(DefaultSheet, 2); err != nil || h != 30 {
		t.Errorf("row 2 (two lines) height = %v (%v), want 30", h, err)
	}
	if h, _ := f.GetRowHeight(DefaultSheet, 3); h != 15 {
		t.Errorf("row 3 height = %v, want 15", h)
	}
	if got, _ := f.GetCellValue(DefaultSheet, cellRef(1, wantRows)); got != "extra" {
		t.Errorf("last label = %q", got)
	}
	for name := range zipParts(t, data, start) {
		if strings.Contains(name, "sharedStrings") {
			t.Errorf("unexpected part %s", name)
		}
	}
}

func itoa(n int) string { return cellRef(0, n) }

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		kind CellKind
		want CellKind
		num  float64
	}{
		{"2024", KindAuto, KindNumber, 2024},
		{"0", KindAuto, KindNumber, 0},
		{"0.5", KindAuto, KindNumber, 0.5},
		{"-0.5", KindAuto, KindNumber, -0.5},
		{"-0", KindAuto, KindText, 0},
		{"-", KindAuto, KindText, 0},
		{"00", KindAuto, KindText, 0},
		{"012", KindAuto, KindText, 0},
		{"-012", KindAuto, KindText, 0},
		{"99999999999", KindAuto, KindNumber, 99999999999},
		{"100000000000", KindAuto, KindText, 0},
		{"100000000000", KindNumber, KindNumber, 100000000000},
		{"1234567890123456", KindNumber, KindText, 0}, // 16 digits: Excel would change it
		{"0.1234567890123456", KindAuto, KindText, 0},
		{"1,234", KindAuto, KindText, 0},
		{" 12", KindAuto, KindText, 0},
		{"1e5", KindAuto, KindText, 0},
		{"12%", KindAuto, KindText, 0},
		{"１２", KindAuto, KindText, 0}, // full-width digits
		{"2024", KindText, KindText, 0},
		{"2024", KindDate, KindText, 0},
		{"2024-04-01", KindAuto, KindDate, 45383},
		{"2024-04-01", KindNumber, KindText, 0},
		{"1900-03-01", KindAuto, KindDate, 61},
		{"1900-02-28", KindAuto, KindText, 0},
		{"2024-13-01", KindAuto, KindText, 0},
		{"2024-04-01 24:00", KindAuto, KindText, 0},
		{"2024-04-01T12:00:00", KindAuto, KindDate, 45383.5},
		{"令和6年4月1日", KindAuto, KindText, 0},
	}
	for _, tt := range tests {
		got := Classify(tt.in, tt.kind)
		if got.Kind != tt.want || tt.want != KindText && got.Number != tt.num || got.Text != tt.in {
			t.Errorf("Classify(%q, %v) = %+v, want kind %v number %v", tt.in, tt.kind, got, tt.want, tt.num)
		}
	}
}

func TestColumnKind(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in, name string
		kind     CellKind
	}{
		{"郵便番号[text]", "郵便番号", KindText},
		{"コード [NUMBER]", "コード", KindNumber},
		{"日付[date]", "日付", KindDate},
		{"x[auto]", "x", KindAuto},
		{"[text]", "[text]", KindAuto},
		{"a[other]", "a[other]", KindAuto},
		{"plain", "plain", KindAuto},
	} {
		if name, kind := ColumnKind(tt.in); name != tt.name || kind != tt.kind {
			t.Errorf("ColumnKind(%q) = %q, %v", tt.in, name, kind)
		}
	}
}

func TestXLSXLongAndHostileText(t *testing.T) {
	t.Parallel()
	// Over the cell limit: the row fails with the reason, never cut.
	long := Row{Number: 1, Headers: []string{"long"}, Fields: map[string]string{"long": strings.Repeat("あ", 40000)}}
	if err := NewXLSX().Render(context.Background(), io.Discard, long); !errors.Is(err, ErrCellTooLong) || !strings.Contains(err.Error(), `column "long" has 40000`) {
		t.Errorf("40,000 characters: %v", err)
	}
	// At the limit, counted in UTF-16 units (the emoji is two): kept whole.
	emoji := "😀" + strings.Repeat("x", 32765)
	row := Row{Number: 1, Headers: []string{"ctl", "emoji"}, Fields: map[string]string{
		"ctl": "a\x00b\x0bc\rd\xffe", "emoji": emoji,
	}}
	f := openXLSX(t, renderXLSX(t, NewXLSX(), row))
	if got, _ := f.GetCellValue(DefaultSheet, "B1"); got != "abc\rd\uFFFDe" {
		t.Errorf("control characters: %q", got)
	}
	if got, _ := f.GetCellValue(DefaultSheet, "B2"); got != emoji {
		t.Errorf("emoji value: %d runes", len([]rune(got)))
	}
}

func buildTemplate(t testing.TB) []byte {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	f.SetCellStr("Sheet1", "A1", "保険者別レポート") // static
	f.SetCellStr("Sheet1", "A2", "識別番号")
	f.SetCellStr("Sheet1", "B2", "{{個別識別番号}}")
	f.SetCellStr("Sheet1", "A3", "年度")
	f.SetCellStr("Sheet1", "B3", "{{ 年度 }}年度 / {{保険者名}}")
	f.SetCellStr("Sheet1", "B4", "{{存在しない列}}")
	f.SetCellStr("Sheet1", "B5", "{{年度}}")
	f.SetCellStr("Sheet1", "B6", "{{年度}}")   // Text format: stays text
	f.SetCellStr("Sheet1", "B7", "{{受付日}}")  // General: gets a date style
	f.SetCellStr("Sheet1", "B8", "{{受付日}}")  // its own date format
	f.SetCellStr("Sheet1", "B9", "{{郵便番号}}") // the column is [text]
	f.SetCellStr("Sheet1", "B10", "{{金額}}")  // number format 0: leading zeros read as a number
	f.SetCellFormula("Sheet1", "C2", "B5*2") // formulas are kept
	f.SetCellInt("Sheet1", "C1", 99)
	italic, err := f.NewStyle(&excelize.Style{Font: &excelize.Font{Italic: true}})
	if err != nil {
		t.Fatal(err)
	}
	text, _ := f.NewStyle(&excelize.Style{NumFmt: 49})
	jpDate := "yyyy年m月d日"
	date, _ := f.NewStyle(&excelize.Style{CustomNumFmt: &jpDate})
	number, _ := f.NewStyle(&excelize.Style{NumFmt: 1})
	f.SetCellStyle("Sheet1", "B2", "B2", italic)
	f.SetCellStyle("Sheet1", "B7", "B7", italic)
	f.SetCellStyle("Sheet1", "B6", "B6", text)
	f.SetCellStyle("Sheet1", "B8", "B8", date)
	f.SetCellStyle("Sheet1", "B10", "B10", number)
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

var templateRow = Row{Number: 1, Headers: []string{"個別識別番号", "保険者名", "年度", "受付日", "郵便番号[text]", "金額"}, Fields: map[string]string{
	"個別識別番号": "000123", "保険者名": "協会けんぽ", "年度": "2024", "受付日": "2024-04-01", "郵便番号[text]": "1000001", "金額": "-00150",
}}

func TestXLSXTemplate(t *testing.T) {
	t.Parallel()
	x, err := NewXLSXTemplate(buildTemplate(t), TemplateLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(x.Placeholders(), ","); got != "個別識別番号,年度,保険者名,存在しない列,受付日,郵便番号,金額" {
		t.Errorf("Placeholders = %q", got)
	}
	start := time.Now()
	data := renderXLSX(t, x, templateRow)
	f := openXLSX(t, data)
	cells := []struct {
		sheet, cell, want string
		typ               excelize.CellType
	}{
		{"Sheet1", "A1", "保険者別レポート", excelize.CellTypeSharedString},
		{"Sheet1", "A2", "識別番号", excelize.CellTypeSharedString},
		{"Sheet1", "B2", "000123", excelize.CellTypeInlineString},
		{"Sheet1", "B3", "2024年度 / 協会けんぽ", excelize.CellTypeInlineString},
		{"Sheet1", "B4", "", excelize.CellTypeUnset},
		{"Sheet1", "B5", "2024", excelize.CellTypeNumber},
		{"Sheet1", "B6", "2024", excelize.CellTypeInlineString},
		{"Sheet1", "B7", "2024/04/01", excelize.CellTypeNumber},
		{"Sheet1", "B8", "2024年4月1日", excelize.CellTypeNumber},
		{"Sheet1", "B9", "1000001", excelize.CellTypeInlineString},
		{"Sheet1", "B10", "-150", excelize.CellTypeNumber},
		{"Sheet1", "C1", "99", excelize.CellTypeUnset},
		{"控え", "D5", "番号=000123", excelize.CellTypeInlineString},
	}
	for _, c := range cells {
		got, err := f.GetCellValue(c.sheet, c.cell)
		if err != nil || got != c.want {
			t.Errorf("%s!%s = %q (%v), want %q", c.sheet, c.cell, got, err, c.want)
		}
		if typ, _ := f.GetCellType(c.sheet, c.cell); typ != c.typ {
			t.Errorf("%s!%s type = %v, want %v", c.sheet, c.cell, typ, c.typ)
		}
	}
	for _, cell := range []string{"B2", "B7"} {
		styleID, _ := f.GetCellStyle("Sheet1", cell)
		if style, err := f.GetStyle(styleID); err != nil || style.Font == nil || !style.Font.Italic {
			t.Errorf("%s lost its template style", cell)
		}
	}
	if formula, _ := f.GetCellFormula("Sheet1", "C2"); formula != "B5*2" {
		t.Errorf("C2 formula = %q", formula)
	}
	for name, body := range zipParts(t, data, start) {
		if strings.Contains(body, "{{") {
			t.Errorf("%s still holds a placeholder", name)
		}
	}

	// The template itself is untouched: a second row renders from the original.
	row := Row{Number: 2, Headers: templateRow.Headers, Fields: map[string]string{"個別識別番号": "000456"}}
	f = openXLSX(t, renderXLSX(t, x, row))
	if got, _ := f.GetCellValue("Sheet1", "B2"); got != "000456" {
		t.Errorf("second render B2 = %q", got)
	}
	if got, _ := f.GetCellValue("Sheet1", "B5"); got != "" {
		t.Errorf("second render B5 = %q", got)
	}
}

func TestXLSXConcurrent(t *testing.T) {
	t.Parallel()
	x, err := NewXLSXTemplate(buildTemplate(t), TemplateLimits{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	outs := make([][]byte, 8)
	for i := range outs {
		wg.Go(func() {
			row := Row{Number: i, Fields: map[string]string{"個別識別番号": "id" + itoa(i)}}
			var buf bytes.Buffer
			if err := x.Render(context.Background(), &buf, row); err == nil {
				outs[i] = buf.Bytes()
			}
		})
	}
	wg.Wait()
	for i, out := range outs {
		if got, _ := openXLSX(t, out).GetCellValue("Sheet1", "B2"); got != "id"+itoa(i) {
			t.Errorf("render %d: B2 = %q", i, got)
		}
	}
}

func TestXLSXTemplateInvalid(t *testing.T) {
	t.Parallel()
	if _, err := NewXLSXTemplate([]byte("not a zip"), TemplateLimits{}); !errors.Is(err, ErrBadTemplate) {
		t.Errorf("garbage template: %v", err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("hello.txt")
	w.Write([]byte("hi"))
	zw.Close()
	if _, err := NewXLSXTemplate(buf.Bytes(), TemplateLimits{}); !errors.Is(err, ErrBadTemplate) {
		t.Errorf("zip without a workbook: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := NewXLSX().Render(ctx, &bytes.Buffer{}, Row{}); err == nil {
		t.Error("canceled render succeeded")
	}
}

func BenchmarkXLSXDefault(b *testing.B) {
	x := NewXLSX()
	row := typedTestRow()
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if err := x.Render(context.Background(), &buf, row); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(buf.Len()))
}

// TestXLSXTemplatePrefixed fills a template written with an "x:" namespace
// prefix and no styles part (as the Open XML SDK writes them).
func TestXLSXTemplatePrefixed(t *testing.T) {
	t.Parallel()
	const ns = `xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main"`
	parts := []struct{ name, body string }{
		{"[Content_Types].xml", `<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>`},
		{"_rels/.rels", `<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>`},
		{"xl/workbook.xml", `<?xml version="1.0" encoding="UTF-8"?><x:workbook ` + ns + ` xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><x:sheets><x:sheet name="S" sheetId="1" r:id="rId1"/></x:sheets></x:workbook>`},
		{"xl/_rels/workbook.xml.rels", `<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>`},
		{"xl/sharedStrings.xml", `<?xml version="1.0" encoding="UTF-8"?><x:sst ` + ns + ` count="2" uniqueCount="2"><x:si><x:t>金額</x:t></x:si><x:si><x:r><x:t>{{</x:t></x:r><x:r><x:t>金額}}</x:t></x:r><x:rPh sb="0" eb="1"><x:t>キンガク</x:t></x:rPh></x:si></x:sst>`},
		{"xl/worksheets/sheet1.xml", `<?xml version="1.0" encoding="UTF-8"?><x:worksheet ` + ns + `><x:sheetData><x:row r="1"><x:c r="A1" t="s"><x:v>0</x:v></x:c><x:c r="B1" t="s"><x:v>1</x:v></x:c><x:c r="C1" t="inlineStr"><x:is><x:t>{{日付}}</x:t></x:is></x:c></x:row></x:sheetData></x:worksheet>`},
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, p := range parts {
		w, _ := zw.Create(p.name)
		w.Write([]byte(p.body))
	}
	zw.Close()
	x, err := NewXLSXTemplate(buf.Bytes(), TemplateLimits{})
	if err != nil {
		t.Fatal(err)
	}
	data := renderXLSX(t, x, Row{Number: 1, Fields: map[string]string{"金額": "-1500", "日付": "2024-04-01"}})
	f := openXLSX(t, data)
	for cell, want := range map[string]struct {
		v   string
		typ excelize.CellType
	}{"A1": {"金額", excelize.CellTypeSharedString}, "B1": {"-1500", excelize.CellTypeNumber}, "C1": {"2024-04-01", excelize.CellTypeInlineString}} {
		got, _ := f.GetCellValue("S", cell)
		typ, _ := f.GetCellType("S", cell)
		if got != want.v || typ != want.typ {
			t.Errorf("%s = %q (%v), want %q (%v)", cell, got, typ, want.v, want.typ)
		}
	}
	if body := zipParts(t, data, time.Now())["xl/sharedStrings.xml"]; strings.Contains(body, "{{") || !strings.Contains(body, "<x:si><x:t></x:t></x:si>") {
		t.Errorf("shared strings not cleaned: %s", body)
	}
}

func BenchmarkXLSXTemplate(b *testing.B) {
	x, err := NewXLSXTemplate(buildTemplate(b), TemplateLimits{})
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if err := x.Render(context.Background(), &buf, templateRow); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len()), "bytes/file")
}

// BenchmarkXLSXExcelize is the way rows were rendered before (a workbook
// built with excelize per row), kept to compare against.
func BenchmarkXLSXExcelize(b *testing.B) {
	row := typedTestRow()
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		f := excelize.NewFile()
		for i, c := range row.Columns() {
			f.SetCellStr("Sheet1", cellRef(1, i+1), c)
			f.SetCellStr("Sheet1", cellRef(2, i+1), row.Fields[c])
		}
		if _, err := f.WriteTo(&buf); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
