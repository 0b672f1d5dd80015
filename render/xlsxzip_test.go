package render

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The XLSX files partZip writes read back whole, every CRC checked, by Go's
// archive/zip and by Info-ZIP's unzip -t: a small row (its sheet stored)
// and a big one (its sheet deflated as it is written, with a data
// descriptor).
func TestXLSXZipReadsBack(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("unzip"); err != nil {
		t.Fatal("needs unzip (apt-get install unzip)")
	}
	var big strings.Builder
	row := Row{Number: 1, Fields: map[string]string{}}
	for i := range 200 {
		h := fmt.Sprintf("col%03d", i)
		row.Headers = append(row.Headers, h)
		row.Fields[h] = strings.Repeat(fmt.Sprintf("value %d of a long row ", i), 20)
		big.WriteString(row.Fields[h])
	}
	for name, r := range map[string]Row{"small": typedTestRow(), "big": row} {
		var buf bytes.Buffer
		if err := NewXLSX().Render(context.Background(), &buf, r); err != nil {
			t.Fatal(err)
		}
		zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var sheet *zip.File
		for _, f := range zr.File {
			rc, err := f.Open()
			if err != nil {
				t.Fatalf("%s %s: %v", name, f.Name, err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil { // checks the CRC at EOF
				t.Fatalf("%s %s: %v", name, f.Name, err)
			}
			rc.Close()
			if f.Name == "xl/worksheets/sheet1.xml" {
				sheet = f
			}
		}
		if sheet == nil {
			t.Fatalf("%s: no sheet", name)
		}
		if wantStored := name == "small"; (sheet.Method == zip.Store) != wantStored {
			t.Errorf("%s: sheet method %d", name, sheet.Method)
		}
		path := filepath.Join(t.TempDir(), name+".xlsx")
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("unzip", "-t", path).CombinedOutput(); err != nil || !strings.Contains(string(out), "No errors detected") {
			t.Errorf("unzip -t %s: %v\n%s", name, err, out)
		}
	}
	if big.Len() < 2*storeBelow {
		t.Fatalf("the big row (%d bytes) does not spill", big.Len())
	}
}
