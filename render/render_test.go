package render

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFileName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("長", 500)
	tests := []struct {
		name   string
		number int
		id     string
		want   string
	}{
		{"plain", 42, "A12345", "row-000042-A12345.txt"},
		{"japanese", 1, "東京-001", "row-000001-東京-001.txt"},
		{"traversal", 2, "../../etc/passwd", "row-000002-etc_passwd.txt"},
		{"separators", 3, `a/b\c`, "row-000003-a_b_c.txt"},
		{"nul", 4, "a\x00b", "row-000004-a_b.txt"},
		{"empty", 5, "", "row-000005.txt"},
		{"only dots", 6, "..", "row-000006.txt"},
		{"spaces", 7, "  x y  ", "row-000007-x_y.txt"},
		{"windows chars", 8, `a:b*c?"<>|`, "row-000008-a_b_c.txt"},
		{"invalid utf8", 9, "ab\xffcd", "row-000009-ab_cd.txt"},
		{"nfd", 10, "\u30ab\u3099", "row-000010-\u30ac.txt"},
		{"big number", 1234567, "x", "row-1234567-x.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row := Row{Number: tt.number, Fields: map[string]string{"個別識別番号": tt.id}}
			if got := FileName(row, Text{}, "個別識別番号"); got != tt.want {
				t.Errorf("FileName = %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("long", func(t *testing.T) {
		got := FileName(Row{Number: 9, Fields: map[string]string{"id": long}}, NewXLSX(), "id")
		if len(got) > MaxFileNameBytes || !utf8.ValidString(got) || !strings.HasPrefix(got, "row-000009-長") || !strings.HasSuffix(got, ".xlsx") {
			t.Errorf("FileName = %q (%d bytes)", got, len(got))
		}
	})
	t.Run("no id field", func(t *testing.T) {
		if got := FileName(Row{Number: 1, Fields: map[string]string{"id": "x"}}, Text{}, ""); got != "row-000001.txt" {
			t.Errorf("FileName = %q", got)
		}
	})
	t.Run("hostile ext", func(t *testing.T) {
		if got := FileName(Row{Number: 1}, customRenderer{ext: "./../x/y"}, ""); got != "row-000001.xy" {
			t.Errorf("FileName = %q", got)
		}
	})
	hostile := []string{"../../etc/passwd", `a/b\c`, "\x00", long, "", "..", "/", `\\server\share`, "a\r\nb", ". .", "\u202e"}
	for _, id := range hostile {
		got := FileName(Row{Number: 1, Fields: map[string]string{"id": id}}, CSV{}, "id")
		if len(got) > MaxFileNameBytes || !utf8.ValidString(got) || strings.ContainsAny(got, "/\\\x00\r\n") ||
			strings.Contains(got, "..") || !strings.HasPrefix(got, "row-000001") {
			t.Errorf("FileName(%q) = %q is unsafe", id, got)
		}
	}
}

// customRenderer is a user-defined renderer, as a deployment would add.
type customRenderer struct{ ext string }

func (customRenderer) Name() string  { return "json-ish" }
func (c customRenderer) Ext() string { return c.ext }
func (customRenderer) Render(_ context.Context, w io.Writer, row Row) error {
	_, err := fmt.Fprintf(w, "{row:%d,n:%d}", row.Number, len(row.Fields))
	return err
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	p := newTestPDF(t)
	for _, r := range []Renderer{NewXLSX(), p, Text{}, CSV{}, customRenderer{ext: ".json"}} {
		if err := reg.Register(r); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(reg.Names(), ","); got != "csv,json-ish,pdf,text,xlsx" {
		t.Errorf("Names = %q", got)
	}
	if err := reg.Register(Text{}); err == nil || !strings.Contains(err.Error(), "text") {
		t.Errorf("duplicate Register: %v", err)
	}
	if err := reg.Register(nil); err == nil {
		t.Error("nil Register accepted")
	}
	if err := reg.Register(customRenderer{}); err == nil {
		t.Error("second custom renderer accepted")
	}
	_, err := reg.Get("docx")
	if !errors.Is(err, ErrUnknownRenderer) || !strings.Contains(err.Error(), "docx") {
		t.Errorf("Get unknown: %v", err)
	}
	r, err := reg.Get("json-ish")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	row := Row{Number: 5, Fields: map[string]string{"a": "1"}}
	if err := r.Render(context.Background(), &buf, row); err != nil || buf.String() != "{row:5,n:1}" {
		t.Errorf("custom render = %q, %v", buf.String(), err)
	}
	if got := FileName(row, r, "a"); got != "row-000005-1.json" {
		t.Errorf("FileName = %q", got)
	}
	for _, name := range []string{"xlsx", "pdf", "text", "csv"} {
		r, err := reg.Get(name)
		if err != nil || r.Name() != name {
			t.Errorf("Get(%q) = %v, %v", name, r, err)
		}
	}
}

func TestText(t *testing.T) {
	t.Parallel()
	row := Row{Number: 1, Headers: jpHeaders, Fields: map[string]string{"個別識別番号": "000123", "保険者名": "協会\r\nけんぽ", "年度": "2024"}}
	var buf bytes.Buffer
	if err := (Text{}).Render(context.Background(), &buf, row); err != nil {
		t.Fatal(err)
	}
	want := "個別識別番号: 000123\n保険者名: 協会\n  けんぽ\n年度: 2024\n"
	if buf.String() != want {
		t.Errorf("text = %q, want %q", buf.String(), want)
	}
}

func TestCSV(t *testing.T) {
	t.Parallel()
	row := Row{Number: 1, Headers: jpHeaders, Fields: map[string]string{"個別識別番号": "000123", "保険者名": "協会, \"けんぽ\"\n東京", "年度": "2024"}}
	var buf bytes.Buffer
	if err := (CSV{}).Render(context.Background(), &buf, row); err != nil {
		t.Fatal(err)
	}
	data, ok := bytes.CutPrefix(buf.Bytes(), []byte("\uFEFF"))
	if !ok {
		t.Fatal("no BOM")
	}
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || strings.Join(recs[0], "|") != strings.Join(jpHeaders, "|") ||
		strings.Join(recs[1], "|") != "000123|協会, \"けんぽ\"\n東京|2024" {
		t.Errorf("records = %q", recs)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestRenderWriteErrors(t *testing.T) {
	t.Parallel()
	row := Row{Number: 1, Headers: jpHeaders, Fields: map[string]string{"年度": "2024"}}
	for _, r := range []Renderer{NewXLSX(), newTestPDF(t), Text{}, CSV{}} {
		if err := r.Render(context.Background(), failWriter{}, row); err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("%s: error = %v, want the write error", r.Name(), err)
		}
	}
}
