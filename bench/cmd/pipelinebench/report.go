package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/pallarel/pallarel/bench/internal/results"
)

// report prints the Markdown summary of a raw RESULT file.
func report(in io.Reader, w io.Writer) error {
	rs, err := results.Parse(in)
	if err != nil {
		return err
	}
	by := func(kind string) []results.Result {
		var out []results.Result
		for _, r := range rs {
			if r.Kind == kind {
				out = append(out, r)
			}
		}
		return out
	}

	// Redis ceilings first: the e2e table refers to them.
	rb := map[string][]float64{}
	for _, r := range by("redis") {
		rb[r.KV["name"]] = append(rb[r.KV["name"]], r.Num("rps"))
	}
	rps := func(cmd, p string) (float64, string) {
		if v := results.Median(rb[cmd+"-"+p]); v > 0 {
			return v, cmd
		}
		return results.Median(rb["ping-"+p]), "ping"
	}
	// Commands per row of each e2e run; LMOVE runs inside the fetch script
	// (EVALSHA), so it is not a round trip of its own.
	perRow := map[string]map[string]float64{}
	for _, r := range by("cmd") {
		if perRow[r.KV["name"]] == nil {
			perRow[r.KV["name"]] = map[string]float64{}
		}
		perRow[r.KV["name"]][r.KV["cmd"]] = r.Num("per_row")
	}
	ceiling := func(name, p string) float64 {
		var secs float64
		for cmd, n := range perRow[name] {
			if cmd == "lmove" || n < 0.01 {
				continue
			}
			v, _ := rps(cmd, p)
			if v > 0 {
				secs += n / v
			}
		}
		if secs == 0 {
			return 0
		}
		return 1 / secs
	}

	fmt.Fprintln(w, "#### Pipeline end to end (real binaries as processes, private redis-server, SQLite, LOCAL_SAVE)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "rows/s = rows / (ZIP ready − upload accepted); times are seconds from POST start.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| run | type | rows | token workers × -c | rows/s to ZIP ready | rows/s to last row | upload s | ZIP ready s | download done s | Redis cmds/row | ½ Redis ceiling (P1) rows/s |")
	fmt.Fprintln(w, "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
	cmdsPerRow := map[string]float64{}
	for _, r := range by("cmds") {
		cmdsPerRow[r.KV["name"]] = r.Num("per_row")
	}
	rate := map[string]float64{}
	for _, r := range by("e2e") {
		n := r.KV["name"]
		rate[n] = r.Num("rate")
		fmt.Fprintf(w, "| %s | %s | %s | %s × %s | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.0f |\n",
			n, r.KV["type"], r.KV["rows"], r.KV["workers"], r.KV["c"], r.Num("rate"), r.Num("rate_rows_ended"),
			r.Num("upload_s"), r.Num("zip_ready_s"), r.Num("download_done_s"), cmdsPerRow[n], ceiling(n, "P1")/2)
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "#### Floor: one process, no queue (csvrows → render → reportzip → local file)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| run | type | rows | render goroutines | one fsynced file per row through storage.Local | rows/s | CPU µs/row | peak RSS MB |")
	fmt.Fprintln(w, "|---|---|---:|---:|---|---:|---:|---:|")
	floor := map[string]float64{}
	for _, r := range by("floor") {
		if r.KV["store"] == "false" {
			floor[r.KV["type"]] = max(floor[r.KV["type"]], r.Num("rate"))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %.0f | %s | %.1f |\n", r.KV["name"], r.KV["type"], r.KV["rows"], r.KV["par"],
			r.KV["store"], r.Num("rate"), r.KV["cpu_us_row"], r.Num("vmhwm_mb"))
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "#### Ratios (same run)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| comparison | value |")
	fmt.Fprintln(w, "|---|---:|")
	for _, r := range by("e2e") {
		n, typ := r.KV["name"], r.KV["type"]
		if fl := floor[typ]; fl > 0 {
			fmt.Fprintf(w, "| floor / %s (how many times slower than the floor) | %.1fx |\n", n, fl/rate[n])
		}
		if c := ceiling(n, "P1"); c > 0 && typ == "text" {
			fmt.Fprintf(w, "| %s / Redis ceiling for its commands, each its own round trip (%.0f rows/s) | %.2f |\n", n, c, rate[n]/c)
			fmt.Fprintf(w, "| %s / Redis ceiling for its commands, pipelined P100 (%.0f rows/s) | %.3f |\n", n, ceiling(n, "P100"), rate[n]/ceiling(n, "P100"))
		}
		// An XLSX or PDF run against the text run with the same workers.
		if typ != "text" {
			if text := "text" + strings.TrimPrefix(n, typ); rate[text] > 0 {
				fmt.Fprintf(w, "| %s / %s rows/s (same run) | %.2f |\n", n, text, rate[n]/rate[text])
			}
		}
	}
	if floor["xlsx"] > 0 && floor["text"] > 0 {
		fmt.Fprintf(w, "| xlsx floor / text floor | %.3f |\n", floor["xlsx"]/floor["text"])
	}
	fmt.Fprintln(w)

	rowsOf := map[string]float64{}
	for _, r := range by("e2e") {
		rowsOf[r.KV["name"]] = r.Num("rows")
	}
	fmt.Fprintln(w, "#### Peak RSS and CPU time per process (MB: sampled VmRSS every 20 ms / kernel VmHWM; CPU: user+system over the whole run)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | run | process | peak VmRSS | VmHWM | CPU s | CPU µs/row |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|")
	for _, r := range by("rss") {
		perRow := ""
		if n := rowsOf[r.KV["name"]]; n > 0 && r.KV["cpu_s"] != "" {
			perRow = fmt.Sprintf("%.0f", r.Num("cpu_s")*1e6/n)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.1f | %.1f | %s | %s |\n", r.KV["scenario"], r.KV["name"], r.KV["proc"], r.Num("peak_rss_mb"), r.Num("vmhwm_mb"), r.KV["cpu_s"], perRow)
	}
	fmt.Fprintln(w)

	if len(perRow) > 0 {
		names := make([]string, 0, len(perRow))
		for n := range perRow {
			names = append(names, n)
		}
		sort.Strings(names)
		first := names[0]
		if _, ok := perRow["text-w1"]; ok {
			first = "text-w1"
		}
		fmt.Fprintf(w, "#### Redis commands per row (%s; commands under 0.01/row left out) and what Redis allows\n\n", first)
		fmt.Fprintln(w, "| command | calls/row | redis-benchmark -P1 req/s (stand-in) | -P100 req/s |")
		fmt.Fprintln(w, "|---|---:|---:|---:|")
		cmds := make([]string, 0, len(perRow[first]))
		for c := range perRow[first] {
			cmds = append(cmds, c)
		}
		sort.Strings(cmds)
		for _, c := range cmds {
			n := perRow[first][c]
			if n < 0.01 {
				continue
			}
			if c == "lmove" {
				fmt.Fprintf(w, "| lmove | %.3f | inside the fetch script (EVALSHA) | |\n", n)
				continue
			}
			p1, as := rps(c, "P1")
			p100, _ := rps(c, "P100")
			label := ""
			if as != c {
				label = " (" + as + ")"
			}
			fmt.Fprintf(w, "| %s | %.3f | %.0f%s | %.0f |\n", c, n, p1, label, p100)
		}
		fmt.Fprintln(w)
	}

	if sp := by("split"); len(sp) > 0 {
		fmt.Fprintln(w, "#### Split of a big CSV by storage reference (no token worker: rows stay queued)")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| rows | CSV MB | upload s (MB/s) | split s | split rows/s | split MB/s | Redis used MB after |")
		fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|")
		for _, r := range sp {
			fmt.Fprintf(w, "| %s | %.0f | %.1f (%.0f) | %.1f | %.0f | %.1f | %.0f |\n", r.KV["rows"], r.Num("csv_mb"), r.Num("upload_s"),
				r.Num("upload_mb_s"), r.Num("split_s"), r.Num("split_rows_s"), r.Num("split_mb_s"), r.Num("redis_used_mb"))
		}
		fmt.Fprintln(w)
	}
	if web := by("web"); len(web) > 0 {
		fmt.Fprintln(w, "#### GET /csv_processing/<token> (JSON) under wrk")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| after run | connections | seconds | req/s | p50 ms | p99 ms | non-2xx |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
		for _, r := range web {
			fmt.Fprintf(w, "| %s | %s | %s | %.0f | %.2f | %.2f | %s |\n", r.KV["name"], r.KV["conns"], r.KV["secs"], r.Num("rps"),
				r.Num("p50_ms"), r.Num("p99_ms"), r.KV["non2xx"])
		}
		fmt.Fprintln(w)
	}
	return nil
}
