package render

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strings"
)

// Text renders a row as UTF-8 "header: value" lines, the format of the Rails
// placeholder job. Line breaks inside a value continue on lines indented by
// two spaces, so every line that does not start with a space begins a column.
type Text struct{}

var _ Renderer = Text{}

// Name returns "text".
func (Text) Name() string { return "text" }

// Ext returns ".txt".
func (Text) Ext() string { return ".txt" }

// Render writes the lines to w.
func (Text) Render(ctx context.Context, w io.Writer, row Row) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Built in one buffer and written once: rows are small and many.
	var b []byte
	for _, col := range row.Columns() {
		v := row.Fields[col]
		if strings.ContainsAny(v, "\r\n") {
			v = strings.ReplaceAll(v, "\r\n", "\n")
			v = strings.ReplaceAll(v, "\n", "\n  ")
		}
		b = append(b, col...)
		b = append(b, ": "...)
		b = append(b, v...)
		b = append(b, '\n')
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write text row %d: %w", row.Number, err)
	}
	return nil
}

// CSV renders a row as a two-line CSV: the header row and the value row.
// It writes UTF-8 with a BOM and CRLF line ends so Japanese Excel opens it
// with the right encoding.
type CSV struct{}

var _ Renderer = CSV{}

// Name returns "csv".
func (CSV) Name() string { return "csv" }

// Ext returns ".csv".
func (CSV) Ext() string { return ".csv" }

// Render writes the CSV to w.
func (CSV) Render(ctx context.Context, w io.Writer, row Row) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	bw.WriteString("\uFEFF")
	cw := csv.NewWriter(bw)
	cw.UseCRLF = true
	cols := row.Columns()
	values := make([]string, len(cols))
	for i, c := range cols {
		values[i] = row.Fields[c]
	}
	cw.Write(cols)
	cw.Write(values)
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv row %d: %w", row.Number, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write csv row %d: %w", row.Number, err)
	}
	return nil
}
