// Package results reads the RESULT lines the benchmarks print
// ("RESULT <kind> key=value ...") and takes their medians.
package results

import (
	"bufio"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Result is one RESULT line: its kind and key=value fields.
type Result struct {
	Kind string
	KV   map[string]string
}

// Num is field k as a number (0 when absent or not a number).
func (r Result) Num(k string) float64 {
	v, _ := strconv.ParseFloat(r.KV[k], 64)
	return v
}

// Parse reads the RESULT lines of in, in order; other lines are skipped.
func Parse(in io.Reader) ([]Result, error) {
	var out []Result
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "RESULT" {
			continue
		}
		r := Result{Kind: f[1], KV: map[string]string{}}
		for _, kv := range f[2:] {
			if k, v, ok := strings.Cut(kv, "="); ok {
				r.KV[k] = v
			}
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

// Median is the median of xs, 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
