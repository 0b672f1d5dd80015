// Package heapprofile writes a heap profile each time a process's heap in
// use reaches a new high (PALLAREL_HEAPPROFILE): how bench/memory.sh finds
// what a server or worker holds at its peak.
package heapprofile

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// Start samples the heap every second until ctx ends and, when the heap in
// use has grown by a tenth over the last profile's, writes a profile to
// prefix.<pid>.heap (replacing the last). An empty prefix does nothing.
func Start(ctx context.Context, prefix string) {
	if prefix == "" {
		return
	}
	path := fmt.Sprintf("%s.%d.heap", prefix, os.Getpid())
	go func() {
		var last uint64
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse < last+last/10 {
				continue
			}
			last = ms.HeapInuse
			if err := write(path); err != nil {
				fmt.Fprintln(os.Stderr, "PALLAREL_HEAPPROFILE:", err)
				return
			}
		}
	}()
}

func write(path string) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}
