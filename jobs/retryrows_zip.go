package jobs

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/reportzip"
)

// resultZip is a run's stored ZIP opened for reading: straight from the
// file when the store is local, else from a temporary copy.
type resultZip struct {
	*zip.Reader
	close func()
}

func (p *Pipeline) openResultZip(ctx context.Context, token string) (*resultZip, error) {
	rc, err := p.d.Store.Open(ctx, contract.ResultKey(token))
	if err != nil {
		return nil, err
	}
	if f, ok := rc.(interface {
		io.ReaderAt
		Stat() (fs.FileInfo, error)
	}); ok {
		st, err := f.Stat()
		if err == nil {
			zr, err := zip.NewReader(f, st.Size())
			if err == nil {
				return &resultZip{Reader: zr, close: func() { rc.Close() }}, nil
			}
		}
	}
	defer rc.Close()
	tmp, err := os.CreateTemp("", "pallarel-result-*.zip")
	if err != nil {
		return nil, err
	}
	done := func() { tmp.Close(); os.Remove(tmp.Name()) }
	n, err := io.Copy(tmp, rc)
	if err != nil {
		done()
		return nil, fmt.Errorf("copy %s: %w", contract.ResultKey(token), err)
	}
	zr, err := zip.NewReader(tmp, n)
	if err != nil {
		done()
		return nil, fmt.Errorf("read %s: %w", contract.ResultKey(token), err)
	}
	return &resultZip{Reader: zr, close: done}, nil
}

// manifestLine is one line of manifest.csv.
type manifestLine struct {
	Row                 int
	File, Status, Error string
}

// eachManifest calls fn for every line of the ZIP's manifest.csv, in order.
func (z *resultZip) eachManifest(fn func(manifestLine) error) error {
	var mf *zip.File
	for _, f := range z.File {
		if f.Name == reportzip.ManifestName {
			mf = f
		}
	}
	if mf == nil {
		return errors.New("the ZIP has no " + reportzip.ManifestName)
	}
	rc, err := mf.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	cr := csv.NewReader(skipBOM(rc))
	cr.FieldsPerRecord = 4
	cr.ReuseRecord = true
	if _, err := cr.Read(); err != nil { // header
		return fmt.Errorf("manifest header: %w", err)
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		n, err := strconv.Atoi(rec[0])
		if err != nil {
			return fmt.Errorf("manifest row %q: %w", rec[0], err)
		}
		if err := fn(manifestLine{Row: n, File: rec[1], Status: rec[2], Error: rec[3]}); err != nil {
			return err
		}
	}
}

func skipBOM(r io.Reader) io.Reader {
	var b [3]byte
	n, _ := io.ReadFull(r, b[:])
	if n == 3 && bytes.Equal(b[:], []byte("\uFEFF")) {
		return r
	}
	return io.MultiReader(bytes.NewReader(b[:n]), r)
}
