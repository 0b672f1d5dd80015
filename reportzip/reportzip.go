// Package reportzip streams the per-row report files of one upload into a
// ZIP archive with a manifest.csv, as FinalizeReportJob delivers them.
//
// Entries are compressed (Deflate; stored when under 512 bytes) and written
// straight through to the destination: memory does not depend on the archive
// or entry sizes, only on the number of entries (archive/zip keeps each
// header for the central directory, and names are remembered to reject
// duplicates: about 250 bytes an entry).
package reportzip

import (
	"archive/zip"
	"bufio"
	"compress/flate"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// ManifestName is the name of the manifest entry.
const ManifestName = "manifest.csv"

// Manifest statuses.
const (
	StatusDone   = "done"
	StatusFailed = "failed"
)

// ErrBadName is returned (wrapped) for an entry name that is not a safe relative path.
var ErrBadName = errors.New("invalid zip entry name")

// ErrDuplicateName is returned (wrapped) when an entry name is used twice.
var ErrDuplicateName = errors.New("duplicate zip entry name")

// ManifestEntry is one line of manifest.csv: the outcome of one CSV row.
type ManifestEntry struct {
	Row    int    // 1-based data row number
	File   string // entry name in the archive; empty when the row failed before producing one
	Status string // StatusDone or StatusFailed; empty means done without Error, failed with it
	Error  string // why the row failed
}

// Writer writes a ZIP archive entry by entry. It is not safe for concurrent use.
// After any error the archive is unusable and every later call returns that error:
// a half-written entry cannot be taken back out of a stream.
type Writer struct {
	zw     *zip.Writer
	names  map[string]bool
	count  int
	newest time.Time // latest entry time, reused for the manifest so output does not depend on a clock
	peek   *bufio.Reader
	err    error
	done   bool
}

// NewWriter returns a Writer that streams the archive to w. Close does not close w.
func NewWriter(w io.Writer) *Writer {
	zw := zip.NewWriter(w)
	zw.RegisterCompressor(zip.Deflate, newFastDeflate)
	return &Writer{zw: zw, names: make(map[string]bool)}
}

// Entries are compressed at flate.BestSpeed with pooled compressors: a
// report holds many small files, and resetting a default-level compressor
// (clearing its 512 KiB hash table) costs more per entry than compressing
// a small file; the archive comes out a little larger.
var fastDeflaters sync.Pool

func newFastDeflate(w io.Writer) (io.WriteCloser, error) {
	fw, ok := fastDeflaters.Get().(*flate.Writer)
	if ok {
		fw.Reset(w)
	} else {
		var err error
		if fw, err = flate.NewWriter(w, flate.BestSpeed); err != nil {
			return nil, err
		}
	}
	return &pooledDeflater{fw: fw}, nil
}

type pooledDeflater struct{ fw *flate.Writer }

func (p *pooledDeflater) Write(b []byte) (int, error) {
	if p.fw == nil {
		return 0, errors.New("zip entry: write after close")
	}
	return p.fw.Write(b)
}

func (p *pooledDeflater) Close() error {
	if p.fw == nil {
		return nil
	}
	err := p.fw.Close()
	fastDeflaters.Put(p.fw)
	p.fw = nil
	return err
}

// Count returns how many entries Add wrote (the manifest excluded).
func (w *Writer) Count() int { return w.count }

// Add streams r into a new entry called name and returns the uncompressed size.
// name must be a clean relative slash-separated path: not absolute, no ".."
// or "." element, no backslash, no control character, valid UTF-8 and not yet
// used. Non-ASCII names get the ZIP UTF-8 flag so Windows and macOS show them
// correctly. A zero modTime is stored as the ZIP epoch (1980-01-01).
func (w *Writer) Add(name string, r io.Reader, modTime time.Time) (int64, error) {
	n, err := w.add(name, r, modTime)
	if err == nil {
		w.count++
		if modTime.After(w.newest) {
			w.newest = modTime
		}
	}
	return n, err
}

func (w *Writer) add(name string, r io.Reader, modTime time.Time) (int64, error) {
	// A file that fits in storeBelow is stored, not compressed: deflating
	// a tiny file costs more than it saves.
	method := zip.Deflate
	if w.peek == nil {
		w.peek = bufio.NewReaderSize(nil, storeBelow)
	}
	w.peek.Reset(r)
	if b, err := w.peek.Peek(storeBelow); err == io.EOF && len(b) < storeBelow {
		method = zip.Store
	}
	fw, err := w.createMethod(name, modTime, method)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(fw, w.peek)
	if err != nil {
		w.err = fmt.Errorf("zip add %q: %w", name, err)
		return n, w.err
	}
	return n, nil
}

// storeBelow is the size under which an entry is stored uncompressed.
const storeBelow = 512

// create checks name and starts its entry, compressed.
func (w *Writer) create(name string, modTime time.Time) (io.Writer, error) {
	return w.createMethod(name, modTime, zip.Deflate)
}

func (w *Writer) createMethod(name string, modTime time.Time, method uint16) (io.Writer, error) {
	if w.err != nil {
		return nil, w.err
	}
	if w.done {
		return nil, errors.New("zip add: writer closed")
	}
	if err := ValidName(name); err != nil {
		return nil, fmt.Errorf("zip add: %w", err)
	}
	if w.names[name] {
		return nil, fmt.Errorf("zip add: %w: %q", ErrDuplicateName, name)
	}
	w.names[name] = true
	fw, err := w.zw.CreateHeader(&zip.FileHeader{Name: name, Method: method, Modified: modTime})
	if err != nil {
		w.err = fmt.Errorf("zip add %q: %w", name, err)
		return nil, w.err
	}
	return fw, nil
}

// ValidName reports why name cannot be a ZIP entry name, or nil.
func ValidName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrBadName)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrBadName, name)
	case strings.HasPrefix(name, "/"):
		return fmt.Errorf("%w: %q is absolute", ErrBadName, name)
	case strings.ContainsRune(name, '\\'):
		return fmt.Errorf("%w: %q contains a backslash", ErrBadName, name)
	case len(name) >= 2 && name[1] == ':':
		return fmt.Errorf("%w: %q has a drive letter", ErrBadName, name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: %q contains a control character", ErrBadName, name)
	case len(name) > 0xFFFF:
		return fmt.Errorf("%w: longer than 65535 bytes", ErrBadName)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." || part == "." || part == "" {
			return fmt.Errorf("%w: %q is not a clean relative path", ErrBadName, name)
		}
	}
	if path.Clean(name) != name {
		return fmt.Errorf("%w: %q is not a clean relative path", ErrBadName, name)
	}
	return nil
}

// AddManifest writes manifest.csv: a header "row,file,status,error" and one
// line per entry, in the order given. It is UTF-8 with a BOM and CRLF line
// ends so Japanese Excel opens it correctly. Its time is that of the newest entry.
func (w *Writer) AddManifest(entries []ManifestEntry) error {
	for i, e := range entries {
		if s := e.status(); s != StatusDone && s != StatusFailed {
			return fmt.Errorf("zip manifest line %d: unknown status %q", i+1, e.Status)
		}
	}
	fw, err := w.create(ManifestName, w.newest)
	if err != nil {
		return err
	}
	if err := writeManifest(fw, entries); err != nil {
		w.err = fmt.Errorf("zip add %s: %w", ManifestName, err)
		return w.err
	}
	return nil
}

func (e ManifestEntry) status() string {
	if e.Status != "" {
		return e.Status
	}
	if e.Error != "" {
		return StatusFailed
	}
	return StatusDone
}

func writeManifest(w io.Writer, entries []ManifestEntry) error {
	m := NewManifest(w)
	for _, e := range entries {
		if err := m.Add(e); err != nil {
			return err
		}
	}
	return m.Flush()
}

// Manifest writes manifest.csv line by line, for a run too big to hold its
// manifest in memory: write it to a spool (a temporary file) while the row
// files are zipped, then add the spool with AddManifestFrom.
type Manifest struct {
	bw *bufio.Writer
	cw *csv.Writer
	n  int
}

// NewManifest starts a manifest on w with its BOM and header line.
func NewManifest(w io.Writer) *Manifest {
	bw := bufio.NewWriter(w)
	bw.WriteString("\uFEFF")
	cw := csv.NewWriter(bw)
	cw.UseCRLF = true
	cw.Write([]string{"row", "file", "status", "error"})
	return &Manifest{bw: bw, cw: cw}
}

// Add writes one line.
func (m *Manifest) Add(e ManifestEntry) error {
	m.n++
	if s := e.status(); s != StatusDone && s != StatusFailed {
		return fmt.Errorf("zip manifest line %d: unknown status %q", m.n, e.Status)
	}
	return m.cw.Write([]string{strconv.Itoa(e.Row), e.File, e.status(), e.Error})
}

// Flush writes out what is buffered.
func (m *Manifest) Flush() error {
	m.cw.Flush()
	if err := m.cw.Error(); err != nil {
		return err
	}
	return m.bw.Flush()
}

// AddManifestFrom writes manifest.csv with the content of r, a manifest
// written by a Manifest. Its time is that of the newest entry.
func (w *Writer) AddManifestFrom(r io.Reader) error {
	fw, err := w.create(ManifestName, w.newest)
	if err != nil {
		return err
	}
	if _, err := io.Copy(fw, r); err != nil {
		w.err = fmt.Errorf("zip add %s: %w", ManifestName, err)
		return w.err
	}
	return nil
}

// Close writes the ZIP central directory. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return nil
	}
	w.done = true
	if err := w.zw.Close(); err != nil {
		w.err = fmt.Errorf("zip close: %w", err)
		return w.err
	}
	return nil
}
