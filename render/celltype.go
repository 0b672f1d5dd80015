package render

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// CellKind is how a value is written into an XLSX cell.
type CellKind int

const (
	// KindAuto lets Classify decide (the default for every column).
	KindAuto CellKind = iota
	// KindText keeps the value as text, exactly as it came.
	KindText
	// KindNumber writes a number when the value reads as one, even with
	// leading zeros or more than 11 digits; otherwise text.
	KindNumber
	// KindDate writes a date when the value reads as one; otherwise text.
	KindDate
)

// Column kind suffixes: a CSV header "郵便番号[text]" makes that column text
// whatever its values look like. The suffix is not shown; templates refer to
// the column with or without it ({{郵便番号}} or {{郵便番号[text]}}).
var kindSuffixes = map[string]CellKind{
	"[text]":   KindText,
	"[number]": KindNumber,
	"[date]":   KindDate,
	"[auto]":   KindAuto,
}

// ColumnKind splits a header into the name to show and the kind its suffix
// asks for (KindAuto when it has none).
func ColumnKind(header string) (name string, kind CellKind) {
	trimmed := strings.TrimRight(header, " ")
	if i := strings.LastIndexByte(trimmed, '['); i > 0 {
		if k, ok := kindSuffixes[strings.ToLower(trimmed[i:])]; ok {
			return strings.TrimRight(trimmed[:i], " "), k
		}
	}
	return header, KindAuto
}

// Cell is a value typed for a spreadsheet.
type Cell struct {
	// Kind is KindText, KindNumber or KindDate (never KindAuto).
	Kind CellKind
	// Text is the value itself (for every kind).
	Text string
	// Number is the number, or the date as an Excel serial (days since
	// 1899-12-30, the time of day as a fraction).
	Number float64
	// HasTime is true for a date with a time of day.
	HasTime bool
}

// maxAutoDigits is the most integer digits a value may have and still become
// a number by itself: Excel's General format shows 12 or more digits as
// 1.23457E+11, so longer values (IDs, account numbers) stay text.
const maxAutoDigits = 11

// maxDigits is Excel's precision: more significant digits would be changed.
const maxDigits = 15

// Classify types one value for a cell of the given kind. The rule, for
// KindAuto (what every column gets unless told otherwise):
//
//   - A plain decimal number becomes a number: an optional "-", digits, an
//     optional fraction ("2024", "-1500", "0.25", "1234.50"). It stays text
//     when that would lose information or how it reads: a leading zero
//     ("0600001", "00"), more than 11 integer digits (long IDs, which Excel
//     would show as 1.2E+11), more than 15 significant digits, a "+", spaces,
//     thousands separators, or anything else ("03-1234-5678", "1e5", "12%").
//     A fraction's trailing zeros are not kept ("1234.50" is 1234.5).
//   - A date becomes a date (a serial number styled as a date):
//     "2024-04-01", "2024/4/1", "2024年4月1日", and with a time
//     "2024-04-01 09:30" or "2024-04-01T09:30:15", from 1900-03-01 on.
//   - Anything else is text, exactly as it came; "" is an empty cell.
//
// No value ever becomes a formula: text starting with = + - @ is text.
// KindText keeps every value as text; KindNumber also accepts leading zeros
// and long integers (up to 15 digits); KindDate is the date rule alone.
func Classify(v string, kind CellKind) Cell {
	text := Cell{Kind: KindText, Text: v}
	if v == "" || kind == KindText {
		return text
	}
	if kind != KindDate {
		if n, ok := parseNumber(v, kind == KindNumber); ok {
			return Cell{Kind: KindNumber, Text: v, Number: n}
		}
	}
	if kind != KindNumber {
		if serial, hasTime, ok := parseDate(v); ok {
			return Cell{Kind: KindDate, Text: v, Number: serial, HasTime: hasTime}
		}
	}
	return text
}

// splitNumber splits "-12.50" into "12" and ".50", or says it is no plain
// decimal number (-?[0-9]+(\.[0-9]+)?, without a regexp: this runs for
// every value).
func splitNumber(v string) (intPart, frac string, ok bool) {
	s := strings.TrimPrefix(v, "-")
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return "", "", false
	}
	intPart, frac = s[:i], s[i:]
	if frac == "" {
		return intPart, "", true
	}
	if frac[0] != '.' || len(frac) == 1 {
		return "", "", false
	}
	for j := 1; j < len(frac); j++ {
		if frac[j] < '0' || frac[j] > '9' {
			return "", "", false
		}
	}
	return intPart, frac, true
}

func parseNumber(v string, lenient bool) (float64, bool) {
	intPart, frac, ok := splitNumber(v)
	if !ok {
		return 0, false
	}
	if !lenient {
		if len(intPart) > 1 && intPart[0] == '0' {
			return 0, false
		}
		if len(intPart) > maxAutoDigits {
			return 0, false
		}
		if v == "-0" || strings.HasPrefix(v, "-0") && frac == "" {
			return 0, false
		}
	}
	sig := strings.TrimLeft(intPart, "0") + strings.TrimRight(strings.TrimPrefix(frac, "."), "0")
	if strings.TrimLeft(intPart, "0") == "" {
		sig = strings.TrimLeft(sig, "0")
	}
	if len(sig) > maxDigits {
		return 0, false
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsInf(n, 0) {
		return 0, false
	}
	return n, true
}

// excelEpoch is day 0 of Excel's 1900 date system for dates after 1900-02-28
// (Excel counts a 1900-02-29 that never was, so earlier dates are off by one
// and stay text here).
var excelEpoch = time.Date(1899, 12, 30, 0, 0, 0, 0, time.UTC)

var firstSerialDate = time.Date(1900, 3, 1, 0, 0, 0, 0, time.UTC)

func parseDate(v string) (serial float64, hasTime bool, ok bool) {
	// Every date form starts with a 4-digit year: most values stop here.
	if len(v) < 8 || !isDigits(v[:4]) {
		return 0, false, false
	}
	n, hasTime, ok := dateFields(v)
	if !ok {
		return 0, false, false
	}
	y, mo, d, h, mi, s := n[0], n[1], n[2], n[3], n[4], n[5]
	if mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 59 {
		return 0, false, false
	}
	t := time.Date(y, time.Month(mo), d, h, mi, s, 0, time.UTC)
	if t.Day() != d || t.Before(firstSerialDate) || y > 9999 {
		return 0, false, false // 2023-02-30 normalised to March: not a date
	}
	days := t.Sub(excelEpoch).Seconds() / 86400
	return days, hasTime, true
}

// dateFields reads the date forms a value may take, without a regexp (this
// runs for every value that starts with four digits):
//
//	^([0-9]{4})[-/]([0-9]{1,2})[-/]([0-9]{1,2})(?:[ T]([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?)?$
//	^([0-9]{4})年([0-9]{1,2})月([0-9]{1,2})日$
//
// n is year, month, day, hour, minute, second (0 where absent); hasTime
// tells whether the hour was given.
func dateFields(v string) (n [6]int, hasTime, ok bool) {
	p := 0
	// digits reads from lo to hi digits at p.
	digits := func(lo, hi int) (int, bool) {
		x, i := 0, 0
		for i < hi && p+i < len(v) && v[p+i] >= '0' && v[p+i] <= '9' {
			x = x*10 + int(v[p+i]-'0')
			i++
		}
		p += i
		return x, i >= lo
	}
	// lit reads s at p.
	lit := func(s string) bool {
		if strings.HasPrefix(v[p:], s) {
			p += len(s)
			return true
		}
		return false
	}
	sep := func() bool { return lit("-") || lit("/") }
	var okY, okMo, okD bool
	if n[0], okY = digits(4, 4); !okY {
		return n, false, false
	}
	if lit("年") {
		if n[1], okMo = digits(1, 2); !okMo || !lit("月") {
			return n, false, false
		}
		if n[2], okD = digits(1, 2); !okD || !lit("日") || p != len(v) {
			return n, false, false
		}
		return n, false, true
	}
	if !sep() {
		return n, false, false
	}
	if n[1], okMo = digits(1, 2); !okMo || !sep() {
		return n, false, false
	}
	if n[2], okD = digits(1, 2); !okD {
		return n, false, false
	}
	if p == len(v) {
		return n, false, true
	}
	if !lit(" ") && !lit("T") {
		return n, false, false
	}
	var okH, okMi, okS bool
	if n[3], okH = digits(1, 2); !okH || !lit(":") {
		return n, false, false
	}
	if n[4], okMi = digits(2, 2); !okMi {
		return n, false, false
	}
	if lit(":") {
		if n[5], okS = digits(2, 2); !okS {
			return n, false, false
		}
	}
	return n, true, p == len(v)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
