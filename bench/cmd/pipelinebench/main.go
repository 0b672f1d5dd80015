// Command pipelinebench times the whole report pipeline for bench/pipeline.sh.
//
//	pipelinebench gencsv -rows N -out FILE [-pad BYTES] [-bytes SIZE]
//	    Streams a CSV with Japanese headers (個別識別番号,保険者名,年度,…) to
//	    FILE: N rows, or as many rows as fit in SIZE bytes.
//	pipelinebench e2e -bin DIR -csv FILE -rows N -type text -name NAME [-workers 1] [-c 10] [-load 20s -conns 50]
//	    Starts a private redis-server, cmd/server (LAUNCHER=none, SQLite,
//	    LOCAL_SAVE) and a `report` worker as processes, uploads FILE through
//	    the HTTP API, starts -workers token workers at -c on the token queue
//	    the upload names, and waits for the ZIP. Prints RESULT lines: times,
//	    rows/s, peak RSS per process and Redis commands per row. With -load
//	    it then loads GET /csv_processing/<token> (JSON) with wrk.
//	pipelinebench floor -csv FILE -type text -name NAME [-par P]
//	    One process, no queue: reads FILE, renders every row with the same
//	    renderer and writes the same ZIP (row files + manifest.csv) to disk.
//	pipelinebench split -bin DIR -csv FILE -name NAME
//	    Uploads a big FILE and samples the report worker's RSS until the
//	    split has pushed every row. No token worker runs.
//	pipelinebench report < RESULT-lines
//	    Medians, ceilings and ratios as Markdown.
//	pipelinebench freeport
//	    Prints a free TCP port on 127.0.0.1.
package main

import (
	"github.com/pallarel/pallarel/bench/internal/benchrun"

	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: pipelinebench gencsv|e2e|floor|split|runs|report|freeport [flags]")
		os.Exit(2)
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "gencsv":
		err = runGenCSV(args)
	case "e2e":
		err = runE2E(args)
	case "floor":
		err = runFloor(args)
	case "split":
		err = runSplit(args)
	case "runs":
		err = runRuns(args)
	case "report":
		err = report(os.Stdin, os.Stdout)
	case "freeport":
		var p int
		if p, err = benchrun.FreePort(); err == nil {
			fmt.Println(p)
		}
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pipelinebench: %v\n", err)
		os.Exit(1)
	}
}
