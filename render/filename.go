package render

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// MaxFileNameBytes caps the names FileName returns (well under the 255-byte
// limit of common file systems and ZIP tools).
const MaxFileNameBytes = 120

// FileName returns a file name for row made by r: "row-000042" (unique per row),
// then "-" and the row's idField value when that is set and non-empty after
// cleaning, then r.Ext(). For example "row-000042-A12345.xlsx".
//
// The result is valid UTF-8 (NFC), at most MaxFileNameBytes bytes, and holds
// no path separator, no "..", no control character and none of the
// characters Windows forbids (<>:"/\|?*), so it is safe as one path element
// and as a ZIP entry name.
func FileName(row Row, r Renderer, idField string) string {
	base := fmt.Sprintf("row-%06d", max(row.Number, 0))
	ext := cleanExt(r.Ext())
	var id string
	if idField != "" {
		id = cleanID(row.Fields[idField])
	}
	if id == "" {
		return base + ext
	}
	room := MaxFileNameBytes - len(base) - 1 - len(ext)
	if room <= 0 {
		return base + ext
	}
	if len(id) > room {
		cut := room
		for cut > 0 && !utf8.RuneStart(id[cut]) {
			cut--
		}
		id = strings.TrimRight(id[:cut], "_.-")
	}
	if id == "" {
		return base + ext
	}
	return base + "-" + id + ext
}

// cleanID maps a user value to a safe file name part.
func cleanID(s string) string {
	s = norm.NFC.String(strings.ToValidUTF8(s, "_"))
	var b strings.Builder
	for _, c := range s {
		switch {
		case c < 0x20 || c == 0x7f || unicode.Is(unicode.Cc, c) || unicode.Is(unicode.Cf, c):
			c = '_'
		case strings.ContainsRune(`<>:"/\|?*`, c):
			c = '_'
		case unicode.IsSpace(c):
			c = '_'
		}
		b.WriteRune(c)
	}
	s = b.String()
	for strings.Contains(s, "..") {
		s = strings.ReplaceAll(s, "..", "_")
	}
	for strings.Contains(s, "__") {
		s = strings.ReplaceAll(s, "__", "_")
	}
	return strings.Trim(s, "_.-")
}

// cleanExt keeps an extension to a dot and ASCII letters and digits.
func cleanExt(ext string) string {
	var b strings.Builder
	for _, c := range strings.TrimPrefix(ext, ".") {
		if c < utf8.RuneSelf && (unicode.IsLetter(c) || unicode.IsDigit(c)) {
			b.WriteRune(c)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	s := b.String()
	if len(s) > 16 {
		s = s[:16]
	}
	return "." + s
}
