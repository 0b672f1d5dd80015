package render

import (
	"math/rand/v2"
	"regexp"
	"strconv"
	"testing"
)

// The date forms as regexps: dateFields must read exactly what they match.
var (
	dateRE   = regexp.MustCompile(`^([0-9]{4})[-/]([0-9]{1,2})[-/]([0-9]{1,2})(?:[ T]([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?)?$`)
	jpDateRE = regexp.MustCompile(`^([0-9]{4})年([0-9]{1,2})月([0-9]{1,2})日$`)
)

// regexpDateFields is dateFields by the regexps.
func regexpDateFields(v string) (n [6]int, hasTime, ok bool) {
	var parts []string
	if m := dateRE.FindStringSubmatch(v); m != nil {
		parts = m[1:]
	} else if m := jpDateRE.FindStringSubmatch(v); m != nil {
		parts = append(m[1:], "", "", "")
	} else {
		return n, false, false
	}
	for i, p := range parts {
		if p != "" {
			n[i], _ = strconv.Atoi(p)
		}
	}
	return n, parts[3] != "", true
}

func TestDateFieldsMatchRegexp(t *testing.T) {
	t.Parallel()
	check := func(v string) {
		t.Helper()
		n, ht, ok := dateFields(v)
		wn, wht, wok := regexpDateFields(v)
		if ok != wok || ok && (n != wn || ht != wht) {
			t.Fatalf("dateFields(%q) = %v %v %v, regexps say %v %v %v", v, n, ht, ok, wn, wht, wok)
		}
	}
	for _, v := range []string{
		"2024-04-01", "2024/4/1", "2024-04/01", "2024-04-01 09:30", "2024-04-01T09:30:15", "2024-04-01 9:30",
		"2024-04-01 09:3", "2024-04-01 09:300", "2024-04-01 09:30:1", "2024-04-01 09:30:", "2024-04-01 ", "2024-04-01T",
		"2024年4月1日", "2024年04月01日", "2024年4月1", "2024年4月1日 ", "2024年123月1日", "20240401", "2024-123-1",
		"2024--01", "2024-04-001", "12024-04-01", "2024-04-01 09:30:15:00", "2024-4-1 123:00",
	} {
		check(v)
	}
	// Random strings over the forms' alphabet.
	alphabet := []string{"0", "1", "2", "9", "-", "/", " ", "T", ":", "年", "月", "日", "x"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 300000 {
		v := strconv.Itoa(1000 + r.IntN(9000))
		for range r.IntN(16) {
			v += alphabet[r.IntN(len(alphabet))]
		}
		check(v)
	}
	// Near misses of each form: each piece with 0-3 digits, any separator.
	num := func() string {
		d := ""
		for range r.IntN(4) {
			d += strconv.Itoa(r.IntN(10))
		}
		return d
	}
	pick := func(s ...string) string { return s[r.IntN(len(s))] }
	for range 300000 {
		v := strconv.Itoa(1000+r.IntN(9000)) + pick("-", "/", "年", ".") + num() + pick("-", "/", "月", "") + num()
		switch r.IntN(4) {
		case 0:
			v += pick("", "日", "日 ")
		case 1:
			v += pick(" ", "T", "t") + num() + pick(":", "") + num()
		case 2:
			v += pick(" ", "T") + num() + ":" + num() + pick(":", "") + num()
		}
		check(v)
	}
}
