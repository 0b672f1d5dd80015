package reportzip_test

import (
	"archive/zip"
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/pallarel/pallarel/reportzip"
)

func ExampleWriter() {
	var buf bytes.Buffer
	w := reportzip.NewWriter(&buf)
	mod := time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)
	if _, err := w.Add("row-000001-1001.txt", strings.NewReader("保険者名: 協会けんぽ\n"), mod); err != nil {
		fmt.Println(err)
		return
	}
	err := w.AddManifest([]reportzip.ManifestEntry{
		{Row: 1, File: "row-000001-1001.txt"},
		{Row: 2, Error: "wrong number of fields"},
	})
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	zr, _ := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	for _, f := range zr.File {
		fmt.Println(f.Name)
	}
	// Output:
	// row-000001-1001.txt
	// manifest.csv
}
