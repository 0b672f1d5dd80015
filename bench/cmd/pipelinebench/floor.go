package main

import (
	"github.com/pallarel/pallarel/bench/internal/benchrun"

	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/pallarel/pallarel/csvrows"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/reportzip"
	"github.com/pallarel/pallarel/storage"
)

// rendered is one row's file, or why it failed.
type rendered struct {
	row  int
	name string
	data []byte
	err  error
}

// runFloor is the pipeline without a queue: read the CSV, render each row
// with the renderer the worker uses, and stream the same ZIP (row files in
// row order + manifest.csv) to a local file. Rendering runs on -par
// goroutines; the ZIP is written in order by one.
func runFloor(args []string) error {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	file := fs.String("csv", "", "CSV to read")
	typ := fs.String("type", "text", "report type: text, xlsx or pdf")
	name := fs.String("name", "", "label")
	par := fs.Int("par", runtime.NumCPU(), "rendering goroutines")
	viaStore := fs.Bool("store", false, "also write each row file through storage.Local as a file of its own, fsynced (the Rails app's design, and the worker's before row packs), and read it back for the ZIP")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var r render.Renderer
	switch *typ {
	case "text":
		r = render.Text{}
	case "xlsx":
		r = render.NewXLSX()
	case "pdf":
		p, err := render.NewPDF(render.PDFOptions{})
		if err != nil {
			return err
		}
		r = p
	default:
		return fmt.Errorf("floor: type %q not supported", *typ)
	}
	dir, err := os.MkdirTemp("", "pipelinebench-floor-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	store, err := storage.NewLocal(filepath.Join(dir, "storage"))
	if err != nil {
		return err
	}
	start := time.Now()
	in, err := os.Open(*file)
	if err != nil {
		return err
	}
	defer in.Close()
	rows, err := csvrows.NewReader(bufio.NewReaderSize(in, 1<<16), csvrows.Options{})
	if err != nil {
		return fmt.Errorf("read %s: %w", *file, err)
	}
	headers := rows.Headers()
	idField := ""
	if len(headers) > 0 {
		idField = headers[0]
	}
	// Each row gets a slot channel, queued in order, so the writer takes
	// results in row order while up to par rows render at once.
	order := make(chan chan rendered, 4**par)
	readErr := make(chan error, 1)
	sem := make(chan struct{}, *par)
	go func() {
		defer close(order)
		for {
			row, err := rows.Next()
			if errors.Is(err, io.EOF) {
				readErr <- nil
				return
			}
			if err != nil {
				readErr <- err
				return
			}
			slot := make(chan rendered, 1)
			order <- slot
			sem <- struct{}{}
			go func(row csvrows.Row) {
				defer func() { <-sem }()
				rr := render.Row{Number: row.Number, Headers: headers, Fields: row.Fields}
				var b bytes.Buffer
				err := row.Err
				if err == nil {
					err = r.Render(ctx, &b, rr)
				}
				name := render.FileName(rr, r, idField)
				data := b.Bytes()
				if err == nil && *viaStore {
					data, err = putAndRead(ctx, store, "rows/floor/"+name, data)
				}
				slot <- rendered{row: row.Number, name: name, data: data, err: err}
			}(row)
		}
	}()
	out, err := os.Create(filepath.Join(dir, "report.zip"))
	if err != nil {
		return err
	}
	defer out.Close()
	bw := bufio.NewWriterSize(out, 1<<20)
	zw := reportzip.NewWriter(bw)
	var manifest []reportzip.ManifestEntry
	n, failed := 0, 0
	now := time.Now()
	for slot := range order {
		res := <-slot
		n++
		e := reportzip.ManifestEntry{Row: res.row, Status: reportzip.StatusDone}
		if res.err != nil {
			e.Status, e.Error = reportzip.StatusFailed, res.err.Error()
			failed++
		} else {
			if _, err := zw.Add(res.name, bytes.NewReader(res.data), now); err != nil {
				return fmt.Errorf("zip %s: %w", res.name, err)
			}
			e.File = res.name
		}
		manifest = append(manifest, e)
	}
	if err := <-readErr; err != nil {
		return fmt.Errorf("read %s: %w", *file, err)
	}
	if err := zw.AddManifest(manifest); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	info, err := out.Stat()
	if err != nil {
		return err
	}
	rss, _ := benchrun.StatusKiB(os.Getpid(), "VmHWM:")
	// CPU time is what a row costs whatever else the machine is doing.
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	fmt.Printf("RESULT floor name=%s type=%s store=%t rows=%d failed=%d par=%d secs=%.3f rate=%.0f zip_mb=%.1f vmhwm_mb=%.1f cpu_s=%.3f cpu_us_row=%.0f\n",
		*name, *typ, *viaStore, n, failed, *par, secs, float64(n)/secs, float64(info.Size())/(1<<20), float64(rss)/1024, cpu, cpu*1e6/float64(n))
	if failed > 0 {
		return fmt.Errorf("floor %s: %d rows failed", *name, failed)
	}
	return nil
}

// putAndRead stores data under key as a row job does (temp file, fsync,
// rename) and reads it back as Finalize does.
func putAndRead(ctx context.Context, st *storage.Local, key string, data []byte) ([]byte, error) {
	if err := st.Put(ctx, key, bytes.NewReader(data)); err != nil {
		return nil, err
	}
	rc, err := st.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
