package main

import (
	"archive/zip"
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pallarel/pallarel/reportzip"
)

// zipMem is the finalizer's ZIP step alone: -entries text-row files (about
// 120 bytes each, named as the pipeline names them) and a manifest spooled
// to a temporary file, written to a ZIP file. It prints the process's peak
// RSS (VmHWM). -writer archivezip is the same with archive/zip, which the
// finalizer used before (with a name set, as reportzip had), for comparison.
func zipMem(args []string) error {
	fs := flag.NewFlagSet("zipmem", flag.ContinueOnError)
	entries := fs.Int("entries", 1_000_000, "row files")
	writer := fs.String("writer", "reportzip", "reportzip or archivezip")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "zipmem-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	out, err := os.Create(dir + "/report.zip")
	if err != nil {
		return err
	}
	defer out.Close()
	spool, err := os.Create(dir + "/manifest.csv")
	if err != nil {
		return err
	}
	defer spool.Close()
	manifest := reportzip.NewManifest(spool)
	bw := bufio.NewWriterSize(out, 1<<20)
	mod := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	var add func(name string, r io.Reader) error
	var closeZip func() error
	switch *writer {
	case "reportzip":
		zw := reportzip.NewWriter(bw)
		add = func(name string, r io.Reader) error { _, err := zw.Add(name, r, mod); return err }
		closeZip = func() error {
			if _, err := spool.Seek(0, io.SeekStart); err != nil {
				return err
			}
			if err := zw.AddManifestFrom(spool); err != nil {
				return err
			}
			return zw.Close()
		}
	case "archivezip":
		zw := zip.NewWriter(bw)
		names := map[string]bool{}
		add = func(name string, r io.Reader) error {
			if names[name] {
				return fmt.Errorf("duplicate %s", name)
			}
			names[name] = true
			w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store, Modified: mod})
			if err != nil {
				return err
			}
			_, err = io.Copy(w, r)
			return err
		}
		closeZip = func() error {
			if _, err := spool.Seek(0, io.SeekStart); err != nil {
				return err
			}
			w, err := zw.Create(reportzip.ManifestName)
			if err != nil {
				return err
			}
			if _, err := io.Copy(w, spool); err != nil {
				return err
			}
			return zw.Close()
		}
	default:
		return fmt.Errorf("unknown writer %q", *writer)
	}
	t0 := time.Now()
	var sb strings.Builder
	for n := 1; n <= *entries; n++ {
		name := fmt.Sprintf("row-%06d-A-%07d.txt", n, n)
		sb.Reset()
		fmt.Fprintf(&sb, "個別識別番号: A-%07d\n氏名: 山田 太郎%d\n保険者名: 東京保険組合\n金額: %d\n", n, n, n*100)
		if err := add(name, strings.NewReader(sb.String())); err != nil {
			return err
		}
		if err := manifest.Add(reportzip.ManifestEntry{Row: n, File: name}); err != nil {
			return err
		}
	}
	if err := manifest.Flush(); err != nil {
		return err
	}
	if err := closeZip(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	secs := time.Since(t0).Seconds()
	info, err := out.Stat()
	if err != nil {
		return err
	}
	hwm, err := statusKiB(os.Getpid(), "VmHWM:")
	if err != nil {
		return err
	}
	fmt.Printf("RESULT zipmem writer=%s entries=%d secs=%.2f zip_mb=%.1f peak_rss_mb=%.1f\n",
		*writer, *entries, secs, float64(info.Size())/(1<<20), float64(hwm)/1024)
	return nil
}
