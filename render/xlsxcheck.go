package render

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Excel's limits on a worksheet (Excel specifications and limits). A row's
// file never comes near the rows and columns limits (the default layout
// writes one sheet row per CSV column, and csvrows allows at most 1,000
// columns); the cell limit is reached by real data.
const (
	MaxXLSXCellChars = maxCellChars // UTF-16 code units of a cell's text
	MaxXLSXRows      = 1_048_576
	MaxXLSXColumns   = 16_384
)

// ErrCellTooLong fails a row one of whose values is longer than an XLSX
// cell may hold. The row fails with the reason instead of its value being
// cut: Excel refuses to open a file with a longer cell, and a cut value
// would be a row marked done with its data lost in silence.
var ErrCellTooLong = errors.New("value longer than an xlsx cell holds (32,767 characters)")

// checkCells refuses a row with a column name or value over
// MaxXLSXCellChars. It counts as Excel does, in UTF-16 code units. A
// template (placeholders not nil) shows only the columns it names, and no
// column names.
func checkCells(row Row, placeholders []string) error {
	cols := placeholders
	if cols == nil {
		cols = row.Columns()
		for _, col := range cols {
			if n := utf16Len(col); n > MaxXLSXCellChars {
				return fmt.Errorf("%w: the name of a column has %d", ErrCellTooLong, n)
			}
		}
	}
	for _, col := range cols {
		if n := utf16Len(row.Fields[col]); n > MaxXLSXCellChars {
			return fmt.Errorf("%w: column %q has %d", ErrCellTooLong, truncateName(col), n)
		}
	}
	return nil
}

// utf16Len is the length of s in UTF-16 code units, or, for s of at most
// MaxXLSXCellChars bytes (never more units than bytes), its rune count.
func utf16Len(s string) int {
	if len(s) <= MaxXLSXCellChars {
		return utf8.RuneCountInString(s) // at most one unit a byte: under the limit anyway
	}
	n := 0
	for _, r := range s {
		n++
		if r >= 0x10000 {
			n++
		}
	}
	return n
}

// truncateName keeps an error's column name short.
func truncateName(s string) string {
	if len(s) <= 80 {
		return s
	}
	i := 80
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
