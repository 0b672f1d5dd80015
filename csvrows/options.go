package csvrows

import (
	"cmp"
	"fmt"
	"strings"
)

// Encoding names reported by Reader.Encoding.
const (
	EncodingUTF8     = "utf-8"
	EncodingShiftJIS = "shift_jis"
)

// Default limits.
const (
	DefaultMaxFieldBytes = 1 << 20 // 1 MiB
	DefaultMaxColumns    = 1000
	DefaultMaxRowBytes   = 8 << 20 // 8 MiB
)

// sniffSize is how much of the input is inspected to detect the encoding and binary data.
const sniffSize = 64 << 10

// Options tunes a Reader. The zero value is ready to use.
type Options struct {
	// Encoding is "", "auto" (detect), "utf-8", "shift_jis" or "cp932" (an
	// alias of shift_jis; "sjis" and "windows-31j" are accepted too). Defaults to auto.
	Encoding string
	// MaxFieldBytes caps one field, in bytes after decoding. Defaults to 1 MiB.
	MaxFieldBytes int
	// MaxColumns caps the header width. Defaults to 1000.
	MaxColumns int
	// MaxRowBytes caps one record, in bytes after decoding, and bounds the
	// read-ahead kept to resynchronise after a bad quote. Defaults to 8 MiB.
	MaxRowBytes int
}

func (o Options) withDefaults() Options {
	o.MaxFieldBytes = cmp.Or(o.MaxFieldBytes, DefaultMaxFieldBytes)
	o.MaxColumns = cmp.Or(o.MaxColumns, DefaultMaxColumns)
	o.MaxRowBytes = cmp.Or(o.MaxRowBytes, DefaultMaxRowBytes)
	return o
}

func (o Options) validate() error {
	if o.MaxFieldBytes < 0 || o.MaxColumns < 0 || o.MaxRowBytes < 0 {
		return fmt.Errorf("csv options: negative limit")
	}
	_, err := normalizeEncoding(o.Encoding)
	return err
}

// normalizeEncoding maps an option value to EncodingUTF8, EncodingShiftJIS or "" (detect).
func normalizeEncoding(name string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "", "auto":
		return "", nil
	case "utf-8", "utf8":
		return EncodingUTF8, nil
	case "shift_jis", "shift-jis", "sjis", "cp932", "windows-31j":
		return EncodingShiftJIS, nil
	default:
		return "", fmt.Errorf("csv options: unknown encoding %q", name)
	}
}
