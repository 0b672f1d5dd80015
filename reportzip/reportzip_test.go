package reportzip

import (
	"archive/zip"
	"bytes"
	"encoding/csv"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestZipRoundTrip(t *testing.T) {
	t.Parallel()
	mod := time.Date(2025, 4, 1, 9, 30, 0, 0, time.UTC)
	entries := []struct{ name, body string }{
		{"row-000001-A001.xlsx", "xlsx bytes"},
		{"row-000002-東京都国保.pdf", "%PDF- 全国健康保険協会"},
		{"row-000003.txt", strings.Repeat("年度: 2024\n", 1000)},
		{"sub/row-000004.txt", ""},
		{"row-000005.txt", strings.Repeat("x", storeBelow-1)},
		{"row-000006.txt", strings.Repeat("y", storeBelow)},
		{"row-000007.XLSX", strings.Repeat("z", 2*storeBelow)}, // compressed already: stored
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, e := range entries {
		n, err := w.Add(e.name, strings.NewReader(e.body), mod)
		if err != nil {
			t.Fatalf("Add %s: %v", e.name, err)
		}
		if n != int64(len(e.body)) {
			t.Errorf("Add %s = %d bytes, want %d", e.name, n, len(e.body))
		}
	}
	if w.Count() != len(entries) {
		t.Errorf("Count = %d", w.Count())
	}
	manifest := []ManifestEntry{
		{Row: 1, File: "row-000001-A001.xlsx", Status: StatusDone},
		{Row: 2, File: "row-000002-東京都国保.pdf"},
		{Row: 5, Error: "列 \"年度\" が空です, 行 5"},
		{Row: 3, File: "row-000003.txt", Status: StatusDone},
	}
	if err := w.AddManifest(manifest); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if len(zr.File) != len(entries)+1 {
		t.Fatalf("%d entries, want %d", len(zr.File), len(entries)+1)
	}
	for i, e := range entries {
		f := zr.File[i]
		if f.Name != e.name {
			t.Errorf("entry %d name = %q, want %q", i, f.Name, e.name)
		}
		// Files under storeBelow bytes or compressed already are stored, others deflated.
		stored := len(e.body) < storeBelow || strings.HasSuffix(e.name, ".XLSX")
		if want := map[bool]uint16{true: zip.Store, false: zip.Deflate}[stored]; f.Method != want {
			t.Errorf("%s (%d bytes) method = %d, want %d", f.Name, len(e.body), f.Method, want)
		}
		if !f.Modified.Equal(mod) {
			t.Errorf("%s modified = %v, want %v", f.Name, f.Modified, mod)
		}
		// Bit 11: the name is UTF-8. archive/zip sets it only for non-ASCII names.
		nonASCII := strings.ContainsFunc(e.name, func(r rune) bool { return r > 127 })
		if got := f.Flags&0x800 != 0; got != nonASCII || f.NonUTF8 {
			t.Errorf("%s UTF-8 flag = %v, want %v", f.Name, got, nonASCII)
		}
		if got := readEntry(t, f); got != e.body {
			t.Errorf("%s body differs (%d bytes, want %d)", f.Name, len(got), len(e.body))
		}
	}

	mf := zr.File[len(entries)]
	if mf.Name != ManifestName {
		t.Fatalf("last entry = %q", mf.Name)
	}
	if !mf.Modified.Equal(mod) {
		t.Errorf("manifest time = %v", mf.Modified)
	}
	raw := readEntry(t, mf)
	body, ok := strings.CutPrefix(raw, "\uFEFF")
	if !ok {
		t.Fatal("manifest has no BOM")
	}
	if !strings.Contains(body, "\r\n") {
		t.Error("manifest lines do not end in CRLF")
	}
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"row", "file", "status", "error"},
		{"1", "row-000001-A001.xlsx", "done", ""},
		{"2", "row-000002-東京都国保.pdf", "done", ""},
		{"5", "", "failed", "列 \"年度\" が空です, 行 5"},
		{"3", "row-000003.txt", "done", ""},
	}
	if len(recs) != len(want) {
		t.Fatalf("manifest = %q", recs)
	}
	for i := range want {
		if strings.Join(recs[i], "|") != strings.Join(want[i], "|") {
			t.Errorf("manifest line %d = %q, want %q", i+1, recs[i], want[i])
		}
	}
}

func readEntry(t *testing.T, f *zip.File) string {
	t.Helper()
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", f.Name, err)
	}
	return string(b)
}

func TestZipNames(t *testing.T) {
	t.Parallel()
	bad := []string{"", "/etc/passwd", "../x", "a/../../x", "a/./b", "./a", `a\b`, "C:x", "a//b", "a/", "a\x00b", "a\nb", "\xff", ".."}
	for _, name := range bad {
		w := NewWriter(io.Discard)
		if _, err := w.Add(name, strings.NewReader("x"), time.Time{}); !errors.Is(err, ErrBadName) {
			t.Errorf("Add(%q) error = %v, want ErrBadName", name, err)
		}
		// A rejected name leaves the writer usable.
		if _, err := w.Add("ok.txt", strings.NewReader("x"), time.Time{}); err != nil {
			t.Errorf("after bad name %q: %v", name, err)
		}
	}
	for _, name := range []string{"a.txt", "行/row-000001-東京.pdf", "a..b", ".hidden"} {
		if err := ValidName(name); err != nil {
			t.Errorf("ValidName(%q) = %v", name, err)
		}
	}

	w := NewWriter(io.Discard)
	if _, err := w.Add("row-1.txt", strings.NewReader("a"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Add("row-1.txt", strings.NewReader("b"), time.Time{}); !errors.Is(err, ErrDuplicateName) {
		t.Errorf("duplicate Add: %v", err)
	}
	if _, err := w.Add(ManifestName, strings.NewReader("x"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := w.AddManifest(nil); !errors.Is(err, ErrDuplicateName) {
		t.Errorf("manifest after an entry named %s: %v", ManifestName, err)
	}
	if err := w.AddManifest([]ManifestEntry{{Row: 1, Status: "maybe"}}); err == nil || !strings.Contains(err.Error(), "maybe") {
		t.Errorf("bad status: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Add("late.txt", strings.NewReader("x"), time.Time{}); err == nil {
		t.Error("Add after Close succeeded")
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestZipErrorsAreSticky(t *testing.T) {
	t.Parallel()
	w := NewWriter(io.Discard)
	if _, err := w.Add("a.txt", failingReader{}, time.Time{}); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Add = %v", err)
	}
	if _, err := w.Add("b.txt", strings.NewReader("x"), time.Time{}); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("Add after failure = %v", err)
	}
	if err := w.Close(); err == nil {
		t.Error("Close after failure succeeded")
	}
}

// pattern yields size bytes of a repeating but not trivially compressible
// pattern and samples the heap every 256 reads.
type pattern struct {
	size, n int64
	reads   int
	peak    uint64
	crc     uint32
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.n >= p.size {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), p.size-p.n)]
	for i := range b {
		x := uint64(p.n) + uint64(i)
		b[i] = byte(x*2654435761>>13) ^ byte(x>>9)
	}
	p.n += int64(len(b))
	p.crc = crc32.Update(p.crc, crc32.IEEETable, b)
	if p.reads++; p.reads%256 == 0 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		p.peak = max(p.peak, ms.HeapInuse)
	}
	return len(b), nil
}

// TestZipStreamsLargeEntry writes a 100 MB entry through an io.Pipe to a
// reader that only counts bytes: the heap must stay far below the entry size.
func TestZipStreamsLargeEntry(t *testing.T) {
	size := int64(100 << 20)
	if testing.Short() {
		size = 10 << 20
	}
	const limit = 32 << 20
	pr, pw := io.Pipe()
	got := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, pr)
		got <- n
	}()
	src := &pattern{size: size}
	w := NewWriter(pw)
	n, err := w.Add("row-000001-大きい.bin", src, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AddManifest([]ManifestEntry{{Row: 1, File: "row-000001-大きい.bin"}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	zipped := <-got
	if n != size {
		t.Errorf("Add = %d bytes, want %d", n, size)
	}
	t.Logf("%d MB entry -> %d MB zip, peak HeapInuse %.1f MiB", size>>20, zipped>>20, float64(src.peak)/(1<<20))
	if zipped < 1000 {
		t.Errorf("zip is %d bytes", zipped)
	}
	if src.peak == 0 || src.peak > limit {
		t.Errorf("peak HeapInuse = %d, want (0, %d]: the archive is being buffered", src.peak, limit)
	}
}

// TestZipLargeEntryContent checks a multi-megabyte entry survives byte for byte.
func TestZipLargeEntryContent(t *testing.T) {
	t.Parallel()
	src := &pattern{size: 8 << 20}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if _, err := w.Add("big.bin", src, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if f := zr.File[0]; f.CRC32 != src.crc || f.UncompressedSize64 != uint64(src.size) {
		t.Errorf("crc %08x size %d, want %08x %d", f.CRC32, f.UncompressedSize64, src.crc, src.size)
	}
	if body := readEntry(t, zr.File[0]); crc32.ChecksumIEEE([]byte(body)) != src.crc {
		t.Error("content differs")
	}
}
