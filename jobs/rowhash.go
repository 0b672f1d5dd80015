package jobs

import (
	"bytes"
	"unicode/utf8"
)

// flatObject reads the row hash the split writes, a flat JSON object of
// strings (and nulls for empty unquoted cells) with no escapes, in one
// pass: one string for all the keys and values, which are slices of it,
// instead of a decoder and two copies a value. ok is false for anything
// else (escapes, other values, invalid UTF-8, bad JSON), which
// orderedObject then reads with jsontext; where ok is true, the result is
// the one jsontext gives (FuzzFlatObject).
func flatObject(raw []byte) (keys []string, fields map[string]string, ok bool) {
	n := bytes.Count(raw, []byte{':'})
	s := string(raw)
	i := skipSpace(s, 0)
	if i >= len(s) || s[i] != '{' {
		return nil, nil, false
	}
	fields = make(map[string]string, n)
	if n > 0 {
		keys = make([]string, 0, n)
	}
	i = skipSpace(s, i+1)
	if i < len(s) && s[i] == '}' {
		return nil, fields, skipSpace(s, i+1) == len(s)
	}
	for {
		k, next, ok := jsonPlainString(s, i)
		if !ok {
			return nil, nil, false
		}
		i = skipSpace(s, next)
		if i >= len(s) || s[i] != ':' {
			return nil, nil, false
		}
		i = skipSpace(s, i+1)
		var v string
		switch {
		case i < len(s) && s[i] == '"':
			if v, next, ok = jsonPlainString(s, i); !ok {
				return nil, nil, false
			}
		case len(s)-i >= 4 && s[i:i+4] == "null":
			next = i + 4
		default:
			return nil, nil, false
		}
		if _, dup := fields[k]; !dup {
			keys = append(keys, k)
		}
		fields[k] = v
		i = skipSpace(s, next)
		if i >= len(s) {
			return nil, nil, false
		}
		switch s[i] {
		case ',':
			i = skipSpace(s, i+1)
		case '}':
			if skipSpace(s, i+1) != len(s) {
				return nil, nil, false
			}
			if len(keys) == 0 {
				keys = nil
			}
			return keys, fields, true
		default:
			return nil, nil, false
		}
	}
}

// jsonPlainString reads the JSON string starting at s[i] (a quote) when it has
// no escape and no control character and is valid UTF-8; it returns its
// text and the index past its closing quote.
func jsonPlainString(s string, i int) (string, int, bool) {
	if i >= len(s) || s[i] != '"' {
		return "", 0, false
	}
	start := i + 1
	ascii := true
	for j := start; j < len(s); j++ {
		switch c := s[j]; {
		case c == '"':
			v := s[start:j]
			if !ascii && !utf8.ValidString(v) {
				return "", 0, false
			}
			return v, j + 1, true
		case c == '\\' || c < 0x20:
			return "", 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", 0, false
}

// skipSpace is the index of the first byte at or after i that is not JSON
// whitespace.
func skipSpace(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}
