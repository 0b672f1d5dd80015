package reportzip

import (
	"archive/zip"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
)

// Archive is a stored report ZIP opened for reading, as "Retry failed
// rows" and the failed-rows page read a run's result back.
type Archive struct {
	*zip.Reader
	close func() error
}

// Read opens the archive rc holds and takes rc over: Close closes it. A
// local file (an io.ReaderAt with Stat) is read in place; anything else (an
// S3 body) is first copied to a temporary file, which Close removes.
func Read(rc io.ReadCloser) (*Archive, error) {
	if f, ok := rc.(interface {
		io.ReaderAt
		Stat() (fs.FileInfo, error)
	}); ok {
		if st, err := f.Stat(); err == nil {
			if zr, err := zip.NewReader(f, st.Size()); err == nil {
				return &Archive{Reader: zr, close: rc.Close}, nil
			}
		}
	}
	defer rc.Close()
	tmp, err := os.CreateTemp("", "pallarel-result-*.zip")
	if err != nil {
		return nil, fmt.Errorf("read zip: %w", err)
	}
	drop := func() error { return errors.Join(tmp.Close(), os.Remove(tmp.Name())) }
	n, err := io.Copy(tmp, rc)
	if err != nil {
		drop()
		return nil, fmt.Errorf("read zip: copy: %w", err)
	}
	zr, err := zip.NewReader(tmp, n)
	if err != nil {
		drop()
		return nil, fmt.Errorf("read zip: %w", err)
	}
	return &Archive{Reader: zr, close: drop}, nil
}

// Close releases the archive's file.
func (a *Archive) Close() error { return a.close() }

// EachManifest calls fn for every line of the archive's manifest.csv, in
// order, as the Writer wrote it (Status is always set). It stops at fn's
// first error and returns it.
func (a *Archive) EachManifest(fn func(ManifestEntry) error) error {
	var mf *zip.File
	for _, f := range a.File {
		if f.Name == ManifestName {
			mf = f
		}
	}
	if mf == nil {
		return errors.New("the ZIP has no " + ManifestName)
	}
	rc, err := mf.Open()
	if err != nil {
		return fmt.Errorf("open %s: %w", ManifestName, err)
	}
	defer rc.Close()
	cr := csv.NewReader(skipBOM(rc))
	cr.FieldsPerRecord = 4
	cr.ReuseRecord = true
	if _, err := cr.Read(); err != nil {
		return fmt.Errorf("%s header: %w", ManifestName, err)
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", ManifestName, err)
		}
		n, err := strconv.Atoi(rec[0])
		if err != nil {
			return fmt.Errorf("%s row %q: %w", ManifestName, rec[0], err)
		}
		if err := fn(ManifestEntry{Row: n, File: rec[1], Status: rec[2], Error: rec[3]}); err != nil {
			return err
		}
	}
}

// skipBOM drops the UTF-8 byte order mark the manifest starts with.
func skipBOM(r io.Reader) io.Reader {
	var b [3]byte
	n, _ := io.ReadFull(r, b[:])
	if n == 3 && bytes.Equal(b[:], []byte("\uFEFF")) {
		return r
	}
	return io.MultiReader(bytes.NewReader(b[:n]), r)
}
