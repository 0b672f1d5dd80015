package render

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestCellLimitCountsUTF16: the limit is Excel's, in UTF-16 code units, so
// 16,384 emoji (32,768 units) are over it and 16,383 are not.
func TestCellLimitCountsUTF16(t *testing.T) {
	t.Parallel()
	x := NewXLSX()
	for _, tt := range []struct {
		value string
		over  bool
	}{
		{strings.Repeat("a", 32_767), false},
		{strings.Repeat("a", 32_768), true},
		{strings.Repeat("😀", 16_383), false},
		{strings.Repeat("😀", 16_384), true},
		{strings.Repeat("長", 40_000), true},
	} {
		err := x.Render(context.Background(), io.Discard, Row{Number: 1, Headers: []string{"v"}, Fields: map[string]string{"v": tt.value}})
		if got := errors.Is(err, ErrCellTooLong); got != tt.over || (!tt.over && err != nil) {
			t.Errorf("%d bytes: %v, want over=%v", len(tt.value), err, tt.over)
		}
	}
}

// TestCellLimitTemplate: a template shows only the columns it names, so
// only those can be too long for a cell.
func TestCellLimitTemplate(t *testing.T) {
	t.Parallel()
	x, err := NewXLSXTemplate(buildTemplate(t), TemplateLimits{})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("長", 40_000)
	row := Row{Number: 1, Headers: []string{"保険者名", "unused"}, Fields: map[string]string{"保険者名": "東京", "unused": long}}
	if err := x.Render(context.Background(), io.Discard, row); err != nil {
		t.Errorf("a long column the template does not show: %v", err)
	}
	row.Fields["保険者名"] = long
	if err := x.Render(context.Background(), io.Discard, row); !errors.Is(err, ErrCellTooLong) {
		t.Errorf("a long column the template shows: %v", err)
	}
}
