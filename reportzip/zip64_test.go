package reportzip

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// unzipTest runs Debian's `unzip -t` on the archive at path; it must be
// installed (it is part of the test environment, never skipped).
func unzipTest(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("unzip", "-t", path).CombinedOutput()
	if err != nil {
		t.Fatalf("unzip -t %s: %v\n%s", path, err, tail(out))
	}
	if !bytes.Contains(out, []byte("No errors detected")) {
		t.Fatalf("unzip -t %s:\n%s", path, tail(out))
	}
	return string(out)
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// TestZipManyEntries writes more than 65,535 entries, which needs the Zip64
// end records, and opens the archive with archive/zip and `unzip -t`.
func TestZipManyEntries(t *testing.T) {
	t.Parallel()
	const n = 70_000
	path := filepath.Join(t.TempDir(), "many.zip")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := NewWriter(f)
	mod := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	manifest := NewManifest(io.Discard)
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("row-%06d-保険.txt", i)
		body := fmt.Sprintf("row %d\n", i)
		if i%1000 == 0 {
			body = strings.Repeat(body, 200) // some deflated entries too
		}
		if _, err := w.Add(name, strings.NewReader(body), mod); err != nil {
			t.Fatal(err)
		}
		_ = manifest.Add(ManifestEntry{Row: i, File: name})
	}
	if err := w.AddManifest([]ManifestEntry{{Row: 1, File: "row-000001-保険.txt"}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if len(zr.File) != n+1 {
		t.Fatalf("%d entries, want %d", len(zr.File), n+1)
	}
	for _, i := range []int{1, 999, 1000, 65535, 65536, n} {
		f := zr.File[i-1]
		if want := fmt.Sprintf("row-%06d-保険.txt", i); f.Name != want {
			t.Errorf("entry %d = %q, want %q", i, f.Name, want)
		}
		want := fmt.Sprintf("row %d\n", i)
		if i%1000 == 0 {
			want = strings.Repeat(want, 200)
		}
		if got := readEntry(t, f); got != want {
			t.Errorf("entry %d body = %q", i, got)
		}
		if !f.Modified.Equal(mod) {
			t.Errorf("entry %d modified = %v", i, f.Modified)
		}
	}
	if zr.File[n].Name != ManifestName {
		t.Errorf("last entry = %q", zr.File[n].Name)
	}
	out := unzipTest(t, path)
	if !strings.Contains(out, fmt.Sprintf("row-%06d", n)) {
		t.Errorf("unzip -t did not list the last row:\n%s", tail([]byte(out)))
	}
}

// zeros reads n zero bytes.
type zeros struct{ n int64 }

func (z *zeros) Read(b []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), z.n)]
	clear(b)
	z.n -= int64(len(b))
	return len(b), nil
}

// holeWriter writes to a file but seeks over all-zero blocks, leaving holes:
// a sparse file, so an archive bigger than 4 GiB costs no disk space.
type holeWriter struct {
	f   *os.File
	off int64
}

func (h *holeWriter) Write(b []byte) (int, error) {
	if len(b) >= 4096 && allZero(b) {
		h.off += int64(len(b))
		return len(b), nil
	}
	n, err := h.f.WriteAt(b, h.off)
	h.off += int64(n)
	return n, err
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// TestZip64Large stores an entry bigger than 4 GiB, so its sizes and the
// offset of the entry after it need Zip64 fields, and checks the archive
// with archive/zip (directory, sizes, the entry after it) and with
// `unzip -t` (every entry's data and CRC).
func TestZip64Large(t *testing.T) {
	t.Parallel()
	const big = 1<<32 + 4096 + 7
	path := filepath.Join(t.TempDir(), "big.zip")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hw := &holeWriter{f: f}
	w := NewWriter(hw)
	mod := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	if _, err := w.Add("before.txt", strings.NewReader("first\n"), mod); err != nil {
		t.Fatal(err)
	}
	// Stored, not deflated: the archive itself outgrows 4 GiB.
	if n, err := w.write("big.bin", mod, methodStore, &zeros{n: big}); err != nil || n != big {
		t.Fatalf("write big.bin = %d, %v", n, err)
	}
	if _, err := w.Add("after.txt", strings.NewReader("after 4 GiB\n"), mod); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(hw.off); err != nil {
		t.Fatal(err)
	}
	if hw.off < big {
		t.Fatalf("archive is %d bytes", hw.off)
	}

	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if len(zr.File) != 3 {
		t.Fatalf("%d entries", len(zr.File))
	}
	bf := zr.File[1]
	// The CRC-32 of the zero bytes; archive/zip and unzip check the data against it too.
	const wantCRC = 0xfa1218f7
	if bf.Name != "big.bin" || bf.UncompressedSize64 != big || bf.CompressedSize64 != big || bf.CRC32 != wantCRC {
		t.Errorf("big.bin: name %q size %d/%d crc %08x, want %d and %08x", bf.Name, bf.UncompressedSize64, bf.CompressedSize64, bf.CRC32, big, wantCRC)
	}
	// big.bin's data and CRC are checked by unzip -t below (reading its
	// 4 GiB twice would double this test's time).
	if got := readEntry(t, zr.File[2]); got != "after 4 GiB\n" {
		t.Errorf("after.txt = %q", got)
	}
	if got := readEntry(t, zr.File[0]); got != "first\n" {
		t.Errorf("before.txt = %q", got)
	}
	unzipTest(t, path)
}

// TestZipMemoryFlat adds many entries and checks the heap grows by far less
// than archive/zip needed (about 250 bytes an entry for headers and names).
func TestZipMemoryFlat(t *testing.T) {
	const n = 300_000
	w := NewWriter(io.Discard)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	if _, err := w.Add("row-0000000-warmup.txt", strings.NewReader("x"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	before := heap()
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("row-%07d-a-fairly-long-identifier-%d.txt", i, i*7)
		if _, err := w.Add(name, strings.NewReader("row body\n"), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	grown := int64(heap()) - int64(before)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d entries: heap grew %.1f MiB (%.1f bytes an entry)", n, float64(grown)/(1<<20), float64(grown)/n)
	// The name hashes take 8 bytes an entry, with the slice's spare room and
	// the map of the last merge's: 16 at this size (a Go map of them: 31).
	if limit := int64(20 * n); grown > limit {
		t.Errorf("heap grew %d bytes for %d entries, want under %d", grown, n, limit)
	}
}

// TestZipDuplicateConfirmedOnDisk checks both sides of the name check: a
// hash hit of a name that was not used (a forced collision) is allowed, and
// a true duplicate deep in the spool is refused.
func TestZipDuplicateConfirmedOnDisk(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for i := range 5000 {
		if _, err := w.Add(fmt.Sprintf("row-%06d.txt", i), strings.NewReader("x"), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	w.names.add(maphash.String(w.seed, "colliding.txt"))
	if _, err := w.Add("colliding.txt", strings.NewReader("y"), time.Time{}); err != nil {
		t.Fatalf("Add after a hash collision: %v", err)
	}
	if _, err := w.Add("row-000017.txt", strings.NewReader("z"), time.Time{}); !errors.Is(err, ErrDuplicateName) {
		t.Fatalf("duplicate Add = %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if len(zr.File) != 5001 || zr.File[5000].Name != "colliding.txt" {
		t.Errorf("%d entries", len(zr.File))
	}
	if got := readEntry(t, zr.File[17]); got != "x" {
		t.Errorf("row-000017.txt = %q", got)
	}
}

// TestZipZeroTime checks a zero time is stored as the ZIP epoch.
func TestZipZeroTime(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if _, err := w.Add("a.txt", strings.NewReader("x"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if got := zr.File[0].Modified; !got.Equal(time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("modified = %v", got)
	}
}
