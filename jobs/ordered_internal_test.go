package jobs

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// orderedObject keeps column order, unquotes strings, turns other values
// into their JSON text, and refuses what is not one JSON object.
func TestOrderedObject(t *testing.T) {
	keys, fields, err := orderedObject(json.RawMessage(`{"年度":"2024","名前":"a\"b\u3042","n":12.50,"z":null,"b":true,"o":{"x":[1, 2]},"年度":"again"}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"年度", "名前", "n", "z", "b", "o"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys = %q, want %q", keys, want)
	}
	want := map[string]string{"年度": "again", "名前": "a\"bあ", "n": "12.50", "z": "", "b": "true", "o": `{"x":[1, 2]}`}
	if !reflect.DeepEqual(fields, want) {
		t.Fatalf("fields = %q, want %q", fields, want)
	}
	for _, bad := range []string{`[1,2]`, `"s"`, `{"a":1`, `{"a":}`, ``, `{"a":1} x`} {
		if _, _, err := orderedObject(json.RawMessage(bad)); err == nil {
			t.Errorf("orderedObject(%q) succeeded; want an error", bad)
		}
	}
}

func BenchmarkOrderedObject(b *testing.B) {
	var parts []string
	for _, h := range []string{"id", "年度", "保険者名", "被保険者数", "金額", "備考"} {
		parts = append(parts, `"`+h+`":"`+strings.Repeat("値", 6)+`"`)
	}
	raw := json.RawMessage("{" + strings.Join(parts, ",") + "}")
	for b.Loop() {
		if _, _, err := orderedObject(raw); err != nil {
			b.Fatal(err)
		}
	}
}
