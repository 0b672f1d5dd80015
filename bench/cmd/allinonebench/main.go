// Command allinonebench measures the all-in-one server (`make run`) with
// its embedded Redis against the same server on an external redis-server,
// and the ZIP writer's memory at a million entries. bench/allinone.sh runs
// it; figures go to bench/RESULTS.md.
//
//	allinonebench gencsv -rows N -out FILE
//	allinonebench run -bin DIR -csv FILE -rows N -mode embedded|external|miniredis
//	allinonebench zipmem -entries N -writer reportzip|archivezip
//	allinonebench report < raw
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: allinonebench gencsv|run|zipmem|report ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "gencsv":
		err = genCSV(os.Args[2:])
	case "run":
		err = runOne(os.Args[2:])
	case "zipmem":
		err = zipMem(os.Args[2:])
	case "report":
		err = report(os.Stdin, os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "allinonebench:", err)
		os.Exit(1)
	}
}
