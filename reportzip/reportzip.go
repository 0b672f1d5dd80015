// Package reportzip streams the per-row report files of one upload into a
// ZIP archive with a manifest.csv, as FinalizeReportJob delivers them.
//
// Entries are compressed (Deflate; stored when under 512 bytes or of a
// format that is compressed already, such as .xlsx and .pdf) and written
// straight through to the destination. Memory does not depend on the archive
// or entry sizes, and barely on the number of entries: the central directory
// is spooled to an unlinked temporary file as entries end (archive/zip keeps
// every header in memory: 489 MB at 1,000,000 rows), and duplicate names
// are caught with an 8-byte hash per name kept in a sorted slice (about 9 MB at 1,000,000
// entries), a hash hit being confirmed against the spooled names. Zip64
// records are written when an entry, an offset or the entry count outgrows
// the classic format.
package reportzip

import (
	"bufio"
	"compress/flate"
	"encoding/binary"
	"encoding/csv"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/maphash"
	"io"
	"os"
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

// Zip methods.
const (
	methodStore   = 0
	methodDeflate = 8
)

// Writer writes a ZIP archive entry by entry. It is not safe for concurrent use.
// After any error the archive is unusable and every later call returns that error:
// a half-written entry cannot be taken back out of a stream.
type Writer struct {
	out     *countWriter
	bw      *bufio.Writer // over out
	dir     *dirSpool
	seed    maphash.Seed
	names   nameSet // the hash of every name used, see nameUsed
	count   int
	newest  time.Time // latest entry time, reused for the manifest so output does not depend on a clock
	peek    *bufio.Reader
	scratch []byte
	err     error
	done    bool
}

// NewWriter returns a Writer that streams the archive to w. Close does not
// close w. The central directory is spooled to a file in os.TempDir(),
// removed as soon as it is created; call Close even after an error to
// release it.
func NewWriter(w io.Writer) *Writer {
	cw := &countWriter{w: w}
	return &Writer{out: cw, bw: bufio.NewWriterSize(cw, 64<<10), seed: maphash.MakeSeed()}
}

// countWriter counts the bytes written through it: the offsets of the
// local headers and of the central directory.
type countWriter struct {
	w io.Writer
	n uint64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += uint64(n)
	return n, err
}

// offset is where the next byte written through w.bw lands.
func (w *Writer) offset() uint64 { return w.out.n + uint64(w.bw.Buffered()) }

// Entries are compressed at flate.BestSpeed with pooled compressors: a
// report holds many small files, and resetting a default-level compressor
// (clearing its 512 KiB hash table) costs more per entry than compressing
// a small file; the archive comes out a little larger.
var fastDeflaters sync.Pool

func getDeflater(w io.Writer) (*flate.Writer, error) {
	if fw, ok := fastDeflaters.Get().(*flate.Writer); ok {
		fw.Reset(w)
		return fw, nil
	}
	return flate.NewWriter(w, flate.BestSpeed)
}

// Expect says about how many entries will be added, so the memory the
// duplicate-name check needs (8 bytes an entry) is taken once instead of
// grown as they come. More or fewer entries than said still work; a count
// past 2^26 reserves 2^26.
func (w *Writer) Expect(entries int) { w.names.reserve(min(entries, 1<<26)) }

// Count returns how many entries Add wrote (the manifest excluded).
func (w *Writer) Count() int { return w.count }

// Add streams r into a new entry called name and returns the uncompressed size.
// name must be a clean relative slash-separated path: not absolute, no ".."
// or "." element, no backslash, no control character, valid UTF-8 and not yet
// used. Non-ASCII names get the ZIP UTF-8 flag so Windows and macOS show them
// correctly. A zero modTime is stored as the ZIP epoch (1980-01-01).
func (w *Writer) Add(name string, r io.Reader, modTime time.Time) (int64, error) {
	// A file that fits in storeBelow is stored, not compressed: deflating
	// a tiny file costs more than it saves. So is a file of a format that
	// is compressed already (XLSX, PDF…): deflating it again costs the
	// finalizer's CPU, one file after another, and saves little.
	if w.peek == nil {
		w.peek = bufio.NewReaderSize(nil, storeBelow)
	}
	w.peek.Reset(r)
	method := uint16(methodDeflate)
	if b, err := w.peek.Peek(storeBelow); err == io.EOF && len(b) < storeBelow || compressedExt[strings.ToLower(path.Ext(name))] {
		method = methodStore
	}
	n, err := w.write(name, modTime, method, w.peek)
	w.peek.Reset(nil)
	if err == nil {
		w.count++
		if modTime.After(w.newest) {
			w.newest = modTime
		}
	}
	return int64(n), err
}

// storeBelow is the size under which an entry is stored uncompressed.
const storeBelow = 512

// compressedExt are the extensions of formats that are compressed already;
// such entries are stored as they are.
var compressedExt = map[string]bool{".xlsx": true, ".docx": true, ".pdf": true, ".zip": true, ".gz": true, ".png": true, ".jpg": true, ".jpeg": true}

// write checks name, then writes a whole entry: local header, data from r,
// data descriptor, and its central directory header to the spool. A bad or
// duplicate name leaves the writer usable; any other error is sticky.
func (w *Writer) write(name string, modTime time.Time, method uint16, r io.Reader) (uint64, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, errors.New("zip add: writer closed")
	}
	if err := ValidName(name); err != nil {
		return 0, fmt.Errorf("zip add: %w", err)
	}
	h := maphash.String(w.seed, name)
	if used, err := w.nameUsed(h, name); err != nil {
		return 0, w.fail(fmt.Errorf("zip add %q: %w", name, err))
	} else if used {
		return 0, fmt.Errorf("zip add: %w: %q", ErrDuplicateName, name)
	}
	e := newEntry(name, method, modTime)
	e.offset = w.offset()
	w.scratch = e.appendLocalHeader(w.scratch[:0])
	if _, err := w.bw.Write(w.scratch); err != nil {
		return 0, w.fail(fmt.Errorf("zip add %q: %w", name, err))
	}
	// The name is taken from here on: a failure below is sticky anyway.
	w.names.add(h)
	start := w.offset()
	cr := &crcReader{r: r}
	if method == methodStore {
		if _, err := io.Copy(w.bw, cr); err != nil {
			return cr.n, w.fail(fmt.Errorf("zip add %q: %w", name, err))
		}
	} else {
		fw, err := getDeflater(w.bw)
		if err == nil {
			_, err = io.Copy(fw, cr)
			if cerr := fw.Close(); err == nil {
				err = cerr
			}
			fastDeflaters.Put(fw)
		}
		if err != nil {
			return cr.n, w.fail(fmt.Errorf("zip add %q: %w", name, err))
		}
	}
	e.crc, e.uncompressed, e.compressed = cr.crc, cr.n, w.offset()-start
	w.scratch = e.appendDataDescriptor(w.scratch[:0])
	if _, err := w.bw.Write(w.scratch); err != nil {
		return cr.n, w.fail(fmt.Errorf("zip add %q: %w", name, err))
	}
	if err := w.spool(&e); err != nil {
		return cr.n, w.fail(fmt.Errorf("zip add %q: central directory spool: %w", name, err))
	}
	return cr.n, nil
}

// fail makes err sticky and releases the spool.
func (w *Writer) fail(err error) error {
	w.err = err
	w.dir.close()
	w.dir = nil
	return err
}

// crcReader counts and checksums what is read through it.
type crcReader struct {
	r   io.Reader
	crc uint32
	n   uint64
}

func (c *crcReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.crc = crc32.Update(c.crc, crc32.IEEETable, b[:n])
	c.n += uint64(n)
	return n, err
}

// spool appends e's central directory header to the spool file.
func (w *Writer) spool(e *entry) error {
	if w.dir == nil {
		d, err := newDirSpool()
		if err != nil {
			return err
		}
		w.dir = d
	}
	w.scratch = e.appendCentralHeader(w.scratch[:0])
	return w.dir.write(w.scratch)
}

// nameUsed reports whether name was used. Only a hash of each name is kept
// in memory; a hash hit, a true duplicate or a 1-in-2^64 collision, is
// confirmed by reading the spooled names.
func (w *Writer) nameUsed(h uint64, name string) (bool, error) {
	if !w.names.has(h) {
		return false, nil
	}
	if w.dir == nil {
		return true, nil // only the name of a failed entry is not spooled, and failures are sticky
	}
	return w.dir.hasName(name)
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
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeManifest(pw, entries)) }()
	_, err := w.write(ManifestName, w.newest, methodDeflate, pr)
	pr.CloseWithError(errors.New("zip manifest: not read")) // ends the goroutine if write stopped early
	return err
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
	_, err := w.write(ManifestName, w.newest, methodDeflate, r)
	return err
}

// Close writes the central directory from its spool and the end records,
// and releases the spool. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.done && w.err == nil {
		return nil
	}
	if w.err != nil {
		w.dir.close()
		w.dir = nil
		return w.err
	}
	w.done = true
	dirOffset := w.offset()
	var dirSize, records uint64
	if w.dir != nil {
		records = w.dir.records
		n, err := w.dir.copyTo(w.bw)
		w.dir.close()
		w.dir = nil
		if err != nil {
			w.err = fmt.Errorf("zip close: central directory: %w", err)
			return w.err
		}
		dirSize = uint64(n)
	}
	w.scratch = appendEnd(w.scratch[:0], records, dirSize, dirOffset, w.offset())
	if _, err := w.bw.Write(w.scratch); err != nil {
		w.err = fmt.Errorf("zip close: %w", err)
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("zip close: %w", err)
		return w.err
	}
	return nil
}

// dirSpool is the central directory being written, in an unlinked
// temporary file.
type dirSpool struct {
	f       *os.File
	bw      *bufio.Writer
	records uint64
}

func newDirSpool() (*dirSpool, error) {
	f, err := os.CreateTemp("", "pallarel-zipdir-*")
	if err != nil {
		return nil, err
	}
	// Unlinked at once: nothing is left behind whatever happens to us.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return &dirSpool{f: f, bw: bufio.NewWriterSize(f, 64<<10)}, nil
}

func (d *dirSpool) write(rec []byte) error {
	d.records++
	_, err := d.bw.Write(rec)
	return err
}

// copyTo writes the whole directory to w.
func (d *dirSpool) copyTo(w io.Writer) (int64, error) {
	if err := d.bw.Flush(); err != nil {
		return 0, err
	}
	if _, err := d.f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	return io.Copy(w, bufio.NewReaderSize(d.f, 64<<10))
}

// hasName reports whether a spooled header has name, reading them all.
func (d *dirSpool) hasName(name string) (bool, error) {
	if err := d.bw.Flush(); err != nil {
		return false, err
	}
	r := bufio.NewReaderSize(io.NewSectionReader(d.f, 0, 1<<62), 64<<10)
	var fixed [centralHeaderLen]byte
	for {
		if _, err := io.ReadFull(r, fixed[:]); err == io.EOF {
			return false, nil
		} else if err != nil {
			return false, err
		}
		nameLen := int(binary.LittleEndian.Uint16(fixed[28:]))
		rest := int(binary.LittleEndian.Uint16(fixed[30:])) + int(binary.LittleEndian.Uint16(fixed[32:]))
		if nameLen == len(name) {
			b, err := r.Peek(nameLen)
			if err != nil {
				return false, err
			}
			if string(b) == name {
				return true, nil
			}
		}
		if _, err := r.Discard(nameLen + rest); err != nil {
			return false, err
		}
	}
}

func (d *dirSpool) close() {
	if d != nil {
		d.f.Close()
	}
}
