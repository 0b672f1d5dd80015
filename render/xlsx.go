package render

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// XLSX renders a row as an Excel workbook with typed cells (see Classify for
// the rule and ColumnKind for the per-column override).
//
// Without a template (NewXLSX) the workbook has one sheet, "Report", with the
// column name in A (bold) and its value in B, one line per column in header
// order. With a template (NewXLSXTemplate) every cell whose text holds
// {{column}} placeholders gets them replaced by the row's values; see
// NewXLSXTemplate.
//
// The workbook is prepared once, when the renderer is made: every part that
// does not depend on the row is deflated then and copied as it is into each
// file; a row costs only its sheet's XML. Cell text is cut at Excel's
// 32,767-character limit. Every zip entry is dated with the time of the render.
type XLSX struct {
	book         *book
	placeholders []string
	now          func() time.Time
}

var _ Renderer = (*XLSX)(nil)

// DefaultSheet is the sheet name of the default layout.
const DefaultSheet = "Report"

// Styles of the default layout (indexes into cellXfs of defaultStyles).
const (
	styleHeader   = 1
	styleText     = 2
	styleDate     = 3
	styleDateTime = 4
	styleNumber   = 5
)

// Number formats every prepared workbook uses for dates: one that reads the
// same in every locale and sorts as text would.
const (
	dateFormat     = "yyyy/mm/dd"
	dateTimeFormat = "yyyy/mm/dd hh:mm:ss"
)

const xmlHeader = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>` + "\n"

const defaultStyles = xmlHeader + `<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">` +
	`<numFmts count="2"><numFmt numFmtId="164" formatCode="` + dateFormat + `"/><numFmt numFmtId="165" formatCode="` + dateTimeFormat + `"/></numFmts>` +
	`<fonts count="2"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font><font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>` +
	`<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>` +
	`<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>` +
	`<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>` +
	`<cellXfs count="6">` +
	`<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>` +
	`<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1" applyAlignment="1"><alignment vertical="top"/></xf>` +
	`<xf numFmtId="49" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1" applyAlignment="1"><alignment vertical="top" wrapText="1"/></xf>` +
	`<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1" applyAlignment="1"><alignment horizontal="left" vertical="top"/></xf>` +
	`<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1" applyAlignment="1"><alignment horizontal="left" vertical="top"/></xf>` +
	`<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" applyAlignment="1"><alignment horizontal="left" vertical="top"/></xf>` +
	`</cellXfs><cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>`

// NewXLSX returns the default two-column XLSX renderer.
func NewXLSX() *XLSX {
	b := &book{}
	static := []struct{ name, data string }{
		{"[Content_Types].xml", xmlHeader + `<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">` +
			`<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>` +
			`<Default Extension="xml" ContentType="application/xml"/>` +
			`<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>` +
			`<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>` +
			`<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>` +
			`<Override PartName="/docProps/app.xml" ContentType="application/vnd.openxmlformats-officedocument.extended-properties+xml"/>` +
			`</Types>`},
		{"_rels/.rels", xmlHeader + `<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">` +
			`<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>` +
			`<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/extended-properties" Target="docProps/app.xml"/>` +
			`</Relationships>`},
		{"docProps/app.xml", xmlHeader + `<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties"><Application>pallarel</Application></Properties>`},
		{"xl/workbook.xml", xmlHeader + `<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">` +
			`<bookViews><workbookView/></bookViews><sheets><sheet name="` + DefaultSheet + `" sheetId="1" r:id="rId1"/></sheets></workbook>`},
		{"xl/_rels/workbook.xml.rels", xmlHeader + `<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">` +
			`<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>` +
			`<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>` +
			`</Relationships>`},
		{"xl/styles.xml", defaultStyles},
	}
	for _, s := range static {
		if err := b.addStatic(s.name, []byte(s.data)); err != nil {
			panic(fmt.Sprintf("render: prepare default workbook: %v", err)) // deflating constants cannot fail
		}
	}
	b.addStamped("xl/worksheets/sheet1.xml", stampDefaultSheet)
	return &XLSX{book: b, now: time.Now}
}

// stampDefaultSheet writes the default layout's sheet for row.
func stampDefaultSheet(w *bufio.Writer, row Row) error {
	cols := row.Columns()
	type column struct {
		name string
		kind CellKind
	}
	var buf [32]column // no allocation for most rows
	named := buf[:0]
	widest := 10.0
	for _, c := range cols {
		name, kind := ColumnKind(c)
		named = append(named, column{name, kind})
		// East Asian characters are about two columns wide.
		widest = max(widest, float64(utf8.RuneCountInString(name)*2+2))
	}
	w.WriteString(xmlHeader)
	w.WriteString(`<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">`)
	// Printed, the two columns fit one page wide.
	w.WriteString(`<sheetPr><pageSetUpPr fitToPage="1"/></sheetPr><dimension ref="A1`)
	if len(cols) > 0 {
		w.WriteString(":B")
		writeInt(w, len(cols))
	}
	w.WriteString(`"/><sheetViews><sheetView workbookViewId="0"/></sheetViews><sheetFormatPr defaultRowHeight="15"/><cols><col min="1" max="1" width="`)
	writeFloat(w, min(widest, 60))
	w.WriteString(`" customWidth="1"/><col min="2" max="2" width="`)
	writeInt(w, valueWidth)
	w.WriteString(`" customWidth="1"/></cols><sheetData>`)
	for i, c := range cols {
		name, kind := named[i].name, named[i].kind
		w.WriteString(`<row r="`)
		writeInt(w, i+1)
		w.WriteByte('"')
		// Spreadsheet programs do not grow a row for wrapped text when
		// they open a file, so a value on several lines gets its height.
		if lines := max(textLines(name, int(min(widest, 60))), textLines(row.Fields[c], valueWidth)); lines > 1 {
			w.WriteString(` ht="`)
			writeInt(w, min(lines*15, 409))
			w.WriteString(`" customHeight="1"`)
		}
		w.WriteString(`>`)
		writeCellAt(w, 'A', i+1, styleHeader, Cell{Kind: KindText, Text: name}, 0, 0, 0)
		writeCellAt(w, 'B', i+1, styleText, Classify(row.Fields[c], kind), styleNumber, styleDate, styleDateTime)
		w.WriteString(`</row>`)
	}
	w.WriteString(`</sheetData><pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>`)
	w.WriteString(`<pageSetup paperSize="9" fitToWidth="1" fitToHeight="0"/></worksheet>`)
	return nil
}

// valueWidth is the value column's width in characters.
const valueWidth = 60

// textLines estimates the lines text takes in a column width characters
// wide: its own line breaks, and wrapping where East Asian characters count
// two. Only a row's height depends on it.
func textLines(text string, width int) int {
	lines, col := 1, 0
	for _, r := range text {
		switch {
		case r == '\n':
			lines, col = lines+1, 0
			continue
		case r == '\r':
			continue
		case r >= 0x1100:
			col += 2
		default:
			col++
		}
		if col > width {
			lines, col = lines+1, 2
		}
	}
	return lines
}

// Name returns "xlsx".
func (*XLSX) Name() string { return "xlsx" }

// Ext returns ".xlsx".
func (*XLSX) Ext() string { return ".xlsx" }

// Placeholders returns the distinct column names the template refers to, in
// sheet then cell order (nil for the default layout).
func (x *XLSX) Placeholders() []string { return x.placeholders }

// Render writes the workbook for row to w.
func (x *XLSX) Render(ctx context.Context, w io.Writer, row Row) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkCells(row, x.placeholders); err != nil {
		return fmt.Errorf("render xlsx row %d: %w", row.Number, err)
	}
	if err := x.book.write(w, row, x.now()); err != nil {
		return fmt.Errorf("render xlsx row %d: %w", row.Number, err)
	}
	return nil
}
