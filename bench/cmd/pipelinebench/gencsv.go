package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"
)

// csvHeader is the header every generated CSV has; the first column is the
// id the row file names carry.
const csvHeader = "個別識別番号,保険者名,年度,氏名,生年月日,請求金額,備考\n"

func runGenCSV(args []string) error {
	fs := flag.NewFlagSet("gencsv", flag.ContinueOnError)
	rows := fs.Int("rows", 100000, "data rows (ignored when -bytes is set)")
	size := fs.Int64("bytes", 0, "stop before the file passes this size")
	pad := fs.Int("pad", 0, "extra bytes of 備考 per row, to make wide rows")
	out := fs.String("out", "", "output file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("gencsv needs -out")
	}
	f, err := os.Create(*out)
	if err != nil {
		return fmt.Errorf("create %s: %w", *out, err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	note := "特記事項なし" + strings.Repeat("x", *pad)
	written, _ := w.WriteString(csvHeader)
	total := int64(written)
	n := 0
	for i := 1; ; i++ {
		if *size == 0 && i > *rows {
			break
		}
		line := fmt.Sprintf("ID-%08d,保険者%d,%d,山田 太郎%d,19%02d-%02d-%02d,%d,%s\n",
			i, i%97, 2000+i%30, i%1000, 40+i%60, 1+i%12, 1+i%28, 1000+i*7%100000, note)
		if *size > 0 && total+int64(len(line)) > *size {
			break
		}
		if _, err := w.WriteString(line); err != nil {
			return fmt.Errorf("write %s: %w", *out, err)
		}
		total += int64(len(line))
		n = i
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	fmt.Printf("RESULT gencsv file=%s rows=%d bytes=%d\n", *out, n, total)
	return f.Close()
}
