package jobs

import (
	"encoding/json"
	"reflect"
	"testing"
)

// encodeOrdered writes what encoding/json would mean: the same strings
// (invalid UTF-8 replaced), in column order, without HTML escapes.
func TestEncodeOrdered(t *testing.T) {
	headers := []string{"id", "名前", "<b>&", "ctl", "bad", "sep", "empty"}
	fields := map[string]string{"id": `a"b\c`, "名前": "あ\u3042", "<b>&": "<i>&amp;", "ctl": "\x00\x01\t\n\r\x1f",
		"bad": "x\xffy", "sep": "\u2028\u2029"}
	raw, err := encodeOrdered(headers, fields, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, got, err := orderedObject(raw)
	if err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	want := map[string]string{}
	for _, h := range headers {
		b, _ := json.Marshal(fields[h]) // encoding/json's reading of the value
		var s string
		_ = json.Unmarshal(b, &s)
		want[h] = s
	}
	if !reflect.DeepEqual(keys, headers) || !reflect.DeepEqual(got, want) {
		t.Fatalf("%s reads back as %q %q, want %q %q", raw, keys, got, headers, want)
	}
	if s := string(raw); !json.Valid(raw) || s[len(s)-len(`"empty":""}`):] != `"empty":""}` {
		t.Fatalf("raw = %s", raw)
	}
}

// A null cell (empty and unquoted in the CSV) is written as JSON null, as
// Ruby's row.to_h has it, and reads back as "" for the renderers.
func TestEncodeOrderedNulls(t *testing.T) {
	headers := []string{"id", "nil", "quoted", "last"}
	fields := map[string]string{"id": "1", "nil": "", "quoted": "", "last": ""}
	raw, err := encodeOrdered(headers, fields, []string{"nil", "last"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"1","nil":null,"quoted":"","last":null}`; string(raw) != want {
		t.Fatalf("raw = %s, want %s", raw, want)
	}
	keys, got, err := orderedObject(raw)
	if err != nil || !reflect.DeepEqual(keys, headers) || !reflect.DeepEqual(got, fields) {
		t.Fatalf("reads back as %q %q (%v)", keys, got, err)
	}
}
