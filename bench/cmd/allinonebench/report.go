package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/pallarel/pallarel/bench/internal/results"
)

// report turns RESULT lines into Markdown tables of medians.
func report(in io.Reader, out io.Writer) error {
	rs, err := results.Parse(in)
	if err != nil {
		return err
	}
	type key struct{ kind, typ, rows string }
	rates := map[key][]float64{}
	secs := map[key][]float64{}
	rss := map[key][]float64{}
	var keys []key
	zip := map[string][]results.Result{}
	var zipKeys []string
	var big []string
	for _, r := range rs {
		switch r.Kind {
		case "allinone":
			k := key{r.KV["kind"], r.KV["type"], r.KV["rows"]}
			if _, ok := secs[k]; !ok {
				keys = append(keys, k)
			}
			secs[k] = append(secs[k], r.Num("zip_ready_s"))
			rates[k] = append(rates[k], r.Num("rate"))
			rss[k] = append(rss[k], r.Num("server_peak_rss_mb"))
		case "e2e":
			big = append(big, fmt.Sprintf("| %s rows, text, 1 token worker -c %s | ZIP ready in %.0f s (%.0f rows/s) |", r.KV["rows"], r.KV["c"], r.Num("zip_ready_s"), r.Num("rate")))
		case "rss":
			if r.KV["scenario"] == "e2e" {
				big = append(big, fmt.Sprintf("| %s peak RSS | %.1f MB sampled, VmHWM %.1f MB |", r.KV["proc"], r.Num("peak_rss_mb"), r.Num("vmhwm_mb")))
			}
		case "zipmem":
			k := r.KV["writer"] + " " + r.KV["entries"]
			if _, ok := zip[k]; !ok {
				zipKeys = append(zipKeys, k)
			}
			zip[k] = append(zip[k], r)
		}
	}
	if len(keys) > 0 {
		fmt.Fprintln(out, "#### All-in-one server: upload to ZIP ready (median of runs)")
		fmt.Fprintln(out)
		fmt.Fprintln(out, "| Redis | type | rows | median s | runs (s) | median rows/s | server peak RSS MB (median) | vs external |")
		fmt.Fprintln(out, "|---|---|---:|---:|---|---:|---:|---:|")
		ext := map[[2]string]float64{}
		for _, k := range keys {
			if k.kind == "external" {
				ext[[2]string{k.typ, k.rows}] = results.Median(secs[k])
			}
		}
		sort.SliceStable(keys, func(i, j int) bool {
			return len(keys[i].rows) < len(keys[j].rows) || len(keys[i].rows) == len(keys[j].rows) && keys[i].rows < keys[j].rows
		})
		for _, k := range keys {
			ratio := "-"
			if e := ext[[2]string{k.typ, k.rows}]; e > 0 {
				ratio = fmt.Sprintf("%.2fx", results.Median(secs[k])/e)
			}
			fmt.Fprintf(out, "| %s | %s | %s | %.2f | %s | %.0f | %.0f | %s |\n", k.kind, k.typ, k.rows,
				results.Median(secs[k]), join(secs[k]), results.Median(rates[k]), results.Median(rss[k]), ratio)
		}
		fmt.Fprintln(out)
	}
	if len(zipKeys) > 0 {
		fmt.Fprintln(out, "#### ZIP step alone: peak RSS of the process (VmHWM)")
		fmt.Fprintln(out)
		fmt.Fprintln(out, "| writer | entries | median peak RSS MB | runs (MB) | median s | ZIP MB |")
		fmt.Fprintln(out, "|---|---:|---:|---|---:|---:|")
		for _, k := range zipKeys {
			var mb, s []float64
			for _, r := range zip[k] {
				mb = append(mb, r.Num("peak_rss_mb"))
				s = append(s, r.Num("secs"))
			}
			w, n, _ := strings.Cut(k, " ")
			fmt.Fprintf(out, "| %s | %s | %.1f | %s | %.1f | %.0f |\n", w, n, results.Median(mb), join(mb), results.Median(s), zip[k][0].Num("zip_mb"))
		}
		fmt.Fprintln(out)
	}
	if len(big) > 0 {
		fmt.Fprintln(out, "#### Full run through the real binaries (the token worker runs the finalizer)")
		fmt.Fprintln(out)
		fmt.Fprintln(out, "| what | figure |")
		fmt.Fprintln(out, "|---|---|")
		for _, l := range big {
			fmt.Fprintln(out, l)
		}
		fmt.Fprintln(out)
	}
	return nil
}

func join(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.1f", x)
	}
	return strings.Join(s, ", ")
}
