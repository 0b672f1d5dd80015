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

// flatObject, where it reads a row hash at all, reads it as jsontext does
// (decodeOrdered); what the split writes (encodeOrdered) it always reads.
func FuzzFlatObject(f *testing.F) {
	for _, s := range []string{`{"年度":"2024","名前":"abc","z":null}`, `{}`, ` { "a" : "b" , "a":null } `, `{"a":"\u3042"}`,
		`{"a":1}`, `{"a":"b"} x`, `{"a":"b",}`, `{"a":"b\x80"}`, `{"a":nul}`, `{"a":"b"`, "{\"a\":\"\t\"}", `{"":""}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		keys, fields, ok := flatObject(raw)
		if !ok {
			return
		}
		wk, wf, err := decodeOrdered(raw)
		if err != nil {
			t.Fatalf("flatObject read %q, which jsontext refuses: %v", raw, err)
		}
		if !reflect.DeepEqual(keys, wk) || !reflect.DeepEqual(fields, wf) {
			t.Fatalf("flatObject(%q) = %q %q, jsontext %q %q", raw, keys, fields, wk, wf)
		}
	})
}

// What the split writes for plain cells takes the one-pass path.
func TestFlatObjectReadsTheSplitsRows(t *testing.T) {
	headers := []string{"id", "年度", "備考", "空"}
	fields := map[string]string{"id": "1", "年度": "2024", "備考": "日本語 text", "空": ""}
	raw, _ := encodeOrdered(headers, fields, []string{"空"})
	keys, got, ok := flatObject(raw)
	if !ok || !reflect.DeepEqual(keys, headers) || !reflect.DeepEqual(got, fields) {
		t.Fatalf("flatObject(%s) = %q %q %v", raw, keys, got, ok)
	}
}
