package render

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/xuri/excelize/v2"
)

// XLSX renders a row as an Excel workbook. Values are written as text cells,
// so identifiers such as "000123" keep their leading zeros.
//
// Without a template (NewXLSX) the workbook has one sheet, "Report", with the
// column name in A (bold) and its value in B, one line per column in header
// order. With a template (NewXLSXTemplate) every cell of every sheet whose text
// contains {{column}} placeholders gets them replaced by the row's values;
// a placeholder naming no column becomes "" (use Placeholders to check a
// template against the CSV header up front). Everything else in the template
// (styles, merged cells, other cells, sheets) is kept; a rich-text cell that
// holds a placeholder becomes plain text with the cell's own style.
// excelize truncates values past Excel's 32,767-character cell limit.
// The workbook is built in memory (excelize has no streaming writer for
// arbitrary templates) and then written to w; one row is small.
type XLSX struct {
	template []byte // nil for the default layout
}

var _ Renderer = (*XLSX)(nil)

// DefaultSheet is the sheet name of the default layout.
const DefaultSheet = "Report"

// placeholderRE matches {{name}}, allowing spaces inside the braces.
var placeholderRE = regexp.MustCompile(`\{\{\s*([^{}]+?)\s*\}\}`)

// NewXLSX returns the default two-column XLSX renderer.
func NewXLSX() *XLSX { return &XLSX{} }

// NewXLSXTemplate returns an XLSX renderer that fills template, an .xlsx file's bytes.
func NewXLSXTemplate(template []byte) (*XLSX, error) {
	f, err := excelize.OpenReader(bytes.NewReader(template))
	if err != nil {
		return nil, fmt.Errorf("open xlsx template: %w", err)
	}
	f.Close()
	return &XLSX{template: bytes.Clone(template)}, nil
}

// Name returns "xlsx".
func (*XLSX) Name() string { return "xlsx" }

// Ext returns ".xlsx".
func (*XLSX) Ext() string { return ".xlsx" }

// Placeholders returns the distinct column names the template refers to, in
// sheet then cell order (nil for the default layout).
func (x *XLSX) Placeholders() ([]string, error) {
	if x.template == nil {
		return nil, nil
	}
	f, err := excelize.OpenReader(bytes.NewReader(x.template))
	if err != nil {
		return nil, fmt.Errorf("open xlsx template: %w", err)
	}
	defer f.Close()
	var names []string
	err = eachTemplateCell(f, func(_, _, text string) error {
		for _, m := range placeholderRE.FindAllStringSubmatch(text, -1) {
			if !slices.Contains(names, m[1]) {
				names = append(names, m[1])
			}
		}
		return nil
	})
	return names, err
}

// Render writes the workbook for row to w.
func (x *XLSX) Render(ctx context.Context, w io.Writer, row Row) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var f *excelize.File
	var err error
	if x.template == nil {
		f, err = defaultWorkbook(row)
	} else {
		f, err = fillTemplate(x.template, row)
	}
	if err != nil {
		return fmt.Errorf("render xlsx row %d: %w", row.Number, err)
	}
	defer f.Close()
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := f.WriteTo(w); err != nil {
		return fmt.Errorf("write xlsx row %d: %w", row.Number, err)
	}
	return nil
}

func defaultWorkbook(row Row) (*excelize.File, error) {
	f := excelize.NewFile()
	if err := f.SetSheetName("Sheet1", DefaultSheet); err != nil {
		f.Close()
		return nil, err
	}
	bold, err := f.NewStyle(&excelize.Style{
		Font:      &excelize.Font{Bold: true},
		Alignment: &excelize.Alignment{Vertical: "top"},
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	wrap, err := f.NewStyle(&excelize.Style{Alignment: &excelize.Alignment{WrapText: true, Vertical: "top"}})
	if err != nil {
		f.Close()
		return nil, err
	}
	cols := row.Columns()
	widest := 10.0
	for i, c := range cols {
		a, _ := excelize.CoordinatesToCellName(1, i+1)
		b, _ := excelize.CoordinatesToCellName(2, i+1)
		if err := f.SetCellStr(DefaultSheet, a, c); err != nil {
			f.Close()
			return nil, fmt.Errorf("column %q: %w", c, err)
		}
		if err := f.SetCellStr(DefaultSheet, b, row.Fields[c]); err != nil {
			f.Close()
			return nil, fmt.Errorf("column %q: %w", c, err)
		}
		// East Asian characters are about two columns wide.
		widest = max(widest, float64(len([]rune(c))*2+2))
	}
	if len(cols) > 0 {
		last, _ := excelize.CoordinatesToCellName(1, len(cols))
		f.SetCellStyle(DefaultSheet, "A1", last, bold)
		last, _ = excelize.CoordinatesToCellName(2, len(cols))
		f.SetCellStyle(DefaultSheet, "B1", last, wrap)
	}
	f.SetColWidth(DefaultSheet, "A", "A", min(widest, 60))
	f.SetColWidth(DefaultSheet, "B", "B", 60)
	return f, nil
}

func fillTemplate(template []byte, row Row) (*excelize.File, error) {
	f, err := excelize.OpenReader(bytes.NewReader(template))
	if err != nil {
		return nil, fmt.Errorf("open xlsx template: %w", err)
	}
	err = eachTemplateCell(f, func(sheet, cell, text string) error {
		if !strings.Contains(text, "{{") {
			return nil
		}
		filled := placeholderRE.ReplaceAllStringFunc(text, func(m string) string {
			return row.Fields[placeholderRE.FindStringSubmatch(m)[1]]
		})
		if filled == text {
			return nil
		}
		if err := f.SetCellStr(sheet, cell, filled); err != nil {
			return fmt.Errorf("fill %s!%s: %w", sheet, cell, err)
		}
		return nil
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// eachTemplateCell calls fn with the raw text of every non-empty cell.
func eachTemplateCell(f *excelize.File, fn func(sheet, cell, text string) error) error {
	for _, sheet := range f.GetSheetList() {
		rows, err := f.GetRows(sheet, excelize.Options{RawCellValue: true})
		if err != nil {
			return fmt.Errorf("read sheet %q: %w", sheet, err)
		}
		for r, cells := range rows {
			for c, text := range cells {
				if text == "" {
					continue
				}
				name, err := excelize.CoordinatesToCellName(c+1, r+1)
				if err != nil {
					return err
				}
				if err := fn(sheet, name, text); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
