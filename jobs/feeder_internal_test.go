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
	raw, err := encodeOrdered(headers, fields)
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
