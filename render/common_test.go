package render

var jpHeaders = []string{"個別識別番号", "保険者名", "年度"}
