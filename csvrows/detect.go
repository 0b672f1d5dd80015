package csvrows

import (
	"bytes"
	"fmt"
	"unicode/utf8"

	"golang.org/x/text/encoding/japanese"
)

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// checkBinary reports ErrBinary when the sniffed prefix is not text.
// UTF-16 gets its own message because Excel's "Unicode text" export produces it.
func checkBinary(sniff []byte) error {
	if bytes.HasPrefix(sniff, []byte{0xFF, 0xFE}) || bytes.HasPrefix(sniff, []byte{0xFE, 0xFF}) {
		return fmt.Errorf("%w: UTF-16 is not supported, save as CSV (UTF-8 or Shift_JIS)", ErrBinary)
	}
	if i := bytes.IndexByte(sniff, 0); i >= 0 {
		return fmt.Errorf("%w: NUL byte at offset %d", ErrBinary, i)
	}
	return nil
}

// detectEncoding picks UTF-8 or Shift_JIS for the sniffed prefix (BOM already removed).
// atEOF says the prefix is the whole input, so a truncated final character is an error
// rather than a cut made by the sniff window.
func detectEncoding(sniff []byte, atEOF bool) string {
	badUTF8 := invalidUTF8(sniff, atEOF)
	if badUTF8 == 0 {
		return EncodingUTF8
	}
	if invalidShiftJIS(sniff, atEOF) < badUTF8 {
		return EncodingShiftJIS
	}
	return EncodingUTF8
}

// invalidUTF8 counts invalid sequences, ignoring a character cut by the window end.
func invalidUTF8(p []byte, atEOF bool) int {
	n := 0
	for len(p) > 0 {
		if p[0] < utf8.RuneSelf {
			p = p[1:]
			continue
		}
		if !atEOF && !utf8.FullRune(p) {
			break
		}
		r, size := utf8.DecodeRune(p)
		if r == utf8.RuneError && size == 1 {
			n++
		}
		p = p[size:]
	}
	return n
}

// invalidShiftJIS counts the U+FFFD the CP932-compatible decoder produces.
// Shift_JIS cannot encode U+FFFD, so each one marks an invalid or unmapped sequence.
func invalidShiftJIS(p []byte, atEOF bool) int {
	if !atEOF && len(p) > 0 && isShiftJISLead(p[len(p)-1]) {
		// The final byte may be a lead byte cut by the window; a lead byte
		// also occurs as a trail byte, but dropping one byte only loses one character.
		p = p[:len(p)-1]
	}
	out, err := japanese.ShiftJIS.NewDecoder().Bytes(p)
	if err != nil {
		return len(p) + 1
	}
	return bytes.Count(out, []byte("\uFFFD"))
}

func isShiftJISLead(b byte) bool {
	return (0x81 <= b && b <= 0x9F) || (0xE0 <= b && b <= 0xFC)
}
