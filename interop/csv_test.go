package interop

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pallarel/pallarel/csvrows"
	"github.com/pallarel/pallarel/internal/e2etest"
)

// csvCases are CSV files on which a plain reading and Ruby's
// CSV.parse(headers: true) differ: empty unquoted cells (nil), quoted
// empty cells (""), CR, LF and CRLF inside quotes, doubled quotes, commas
// in quotes, a last line without a line break. (Blank lines and short rows
// are read differently on purpose: README, "The pipeline and the Rails
// contract".)
var csvCases = []string{
	"a,b,c\n1,,\"\"\n,\"\",\n",
	"個別識別番号,保険者名,年度\r\n1001,\"全国\r\n健康\",2024\r\n1002,\"x\ny\",\r\n1003,\"p\rq\",\"\"\r\n",
	"id,memo\n1,\"say \"\"hi\"\", then go\"\n2,\"a,b,c\"\n3,last",
	"id,a,b\n\"\",,\n,\"\",\"\"\n",
}

// TestCSVReadAsRuby: csvrows reads each case as Ruby 8's CSV.parse(headers:
// true) with row.to_h does (what the app's SplitCsvJob pushes): the same
// rows, the same keys in the same order, nil exactly where Ruby has nil.
func TestCSVReadAsRuby(t *testing.T) {
	t.Parallel()
	dir := e2etest.RubyDir(t)
	var paths []string
	for i, text := range csvCases {
		p := filepath.Join(dir, fmt.Sprintf("csv_case_%d.csv", i))
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(p) })
		paths = append(paths, p)
	}
	var ruby [][][]any // per file, per row, [key, value or nil] pairs
	rubyResult(t, "8", "./testdata/csv_parse.rb", &ruby, "CSV_FILES="+strings.Join(paths, ":"))
	if len(ruby) != len(csvCases) {
		t.Fatalf("Ruby read %d files", len(ruby))
	}
	show := func(key string, v *string) string {
		if v == nil {
			return key + "=nil"
		}
		return fmt.Sprintf("%s=%q", key, *v)
	}
	for i, text := range csvCases {
		var want []string
		for _, row := range ruby[i] {
			var cells []string
			for _, kv := range row {
				pair := kv.([]any)
				var v *string
				if s, ok := pair[1].(string); ok {
					v = &s
				}
				cells = append(cells, show(pair[0].(string), v))
			}
			want = append(want, strings.Join(cells, " "))
		}
		r, err := csvrows.NewReader(strings.NewReader(text), csvrows.Options{})
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		var got []string
		for {
			row, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil || row.Err != nil {
				t.Fatalf("case %d: %v %v", i, err, row.Err)
			}
			var cells []string
			for _, h := range r.Headers() {
				v := row.Fields[h]
				if row.IsNull(h) {
					cells = append(cells, show(h, nil))
				} else {
					cells = append(cells, show(h, &v))
				}
			}
			got = append(got, strings.Join(cells, " "))
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("case %d %q:\n  Go   %q\n  Ruby %q", i, text, got, want)
		}
	}
}
