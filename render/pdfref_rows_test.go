package render

import (
	"strconv"
	"strings"
)

// pdfRefRows are the rows whose pages, as the gopdf renderer drew them,
// are kept in testdata/pdfref-*.png (pdftoppm -r 100 -gray).
func pdfRefRows() map[string]Row {
	one := Row{Number: 1, Headers: []string{"個別識別番号", "保険者名", "年度", "氏名", "生年月日", "請求金額", "備考"}, Fields: map[string]string{
		"個別識別番号": "ID-00000001", "保険者名": "保険者1", "年度": "2001", "氏名": "山田 太郎1", "生年月日": "1941-02-02", "請求金額": "1007", "備考": "特記事項なし",
	}}
	long := Row{Number: 12345, Headers: []string{"説明", "住所\n(本籍)"}, Fields: map[string]string{
		"説明":       strings.Repeat("全国健康保険協会の被保険者証について。Insured persons' cards, 2024年度版. ", 12) + "\n\n改行の後😀\tタブ",
		"住所\n(本籍)": "東京都千代田区千代田1-1\r\n皇居外苑",
	}}
	for i := range 45 {
		h := "項目" + strconv.Itoa(i+1)
		long.Headers = append(long.Headers, h)
		long.Fields[h] = strings.Repeat("値", i%9+1) + strconv.Itoa(i*37)
	}
	return map[string]Row{"one": one, "long": long}
}
