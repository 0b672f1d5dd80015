package server

// uxMessages are the messages of the checks at the door (the CSV header
// read while the upload streams, templates that cannot apply) and of the
// run pages' extra lines, by language code. locale.T looks here last.
var uxMessages = map[string]map[string]string{
	"ja": {
		"err_too_many_columns": "列が多すぎます。",
		"err_bad_header":       "見出し行を読めません。",
		"err_no_rows":          "見出し行だけで、データ行がありません。",
		"err_template_type":    "テンプレートは出力形式 xlsx でだけ使えます。",
		"err_template_columns": "テンプレートの {{…}} がCSVのどの列名とも一致しません。",
		"err_nothing_to_retry": "再実行できる失敗行はありません (読み取りエラーの行は、CSVを直して再度アップロードしてください)。",
		"err_expired_run":      "この処理は見つかりません。終了した処理は RETAIN_RUNS の期間が過ぎると削除されます。",
		"worker":               "担当ワーカー",
		"estimating":           "計算中…",
		"output_type":          "出力形式",
	},
	"en": {
		"err_too_many_columns": "The CSV has too many columns.",
		"err_bad_header":       "The CSV's header row cannot be read.",
		"err_no_rows":          "The CSV has a header row and no data rows.",
		"err_template_type":    "A template applies to xlsx output only.",
		"err_template_columns": "No {{…}} placeholder of the template names a column of the CSV.",
		"err_nothing_to_retry": "Nothing to retry: no failed row can run again (rows that failed to parse need a corrected CSV, uploaded again).",
		"err_expired_run":      "No such run. Ended runs are removed once RETAIN_RUNS has passed.",
		"worker":               "Worker",
		"estimating":           "estimating…",
		"output_type":          "Output",
	},
}
