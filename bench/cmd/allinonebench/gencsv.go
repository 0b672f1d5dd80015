package main

import (
	"bufio"
	"encoding/csv"
	"flag"
	"fmt"
	"os"
)

// genCSV writes the CSV shape the end-to-end tests upload (Japanese
// headers, four columns) with -rows rows.
func genCSV(args []string) error {
	fs := flag.NewFlagSet("gencsv", flag.ContinueOnError)
	rows := fs.Int("rows", 10000, "data rows")
	out := fs.String("out", "", "output file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := csv.NewWriter(bw)
	w.UseCRLF = true
	_ = w.Write([]string{"個別識別番号", "氏名", "保険者名", "金額"})
	for n := 1; n <= *rows; n++ {
		_ = w.Write([]string{fmt.Sprintf("A-%07d", n), fmt.Sprintf("山田 太郎%d", n), "東京保険組合", fmt.Sprint(n * 100)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}
