package csvrows_test

import (
	"fmt"
	"io"
	"strings"

	"github.com/pallarel/pallarel/csvrows"
)

func ExampleReader() {
	in := "\uFEFF個別識別番号,保険者名,年度\r\n" +
		"1001,\"全国健康保険協会\r\n東京支部\",2024\r\n" +
		"1002,組合\r\n" + // one field short
		"1003,国保,2025\r\n"
	r, err := csvrows.NewReader(strings.NewReader(in), csvrows.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Encoding(), r.Headers())
	for {
		row, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		if row.Err != nil {
			fmt.Println("skip:", row.Err)
			continue
		}
		fmt.Printf("row %d (line %d): %q\n", row.Number, row.Line, row.Fields["保険者名"])
	}
	// Output:
	// utf-8 [個別識別番号 保険者名 年度]
	// row 1 (line 2): "全国健康保険協会\r\n東京支部"
	// skip: line 4 (row 2): wrong number of fields: got 2, want 3
	// row 3 (line 5): "国保"
}
