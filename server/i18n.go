package server

import (
	"github.com/gin-gonic/gin"
	"golang.org/x/text/language"
)

// locale is the UI language of one request: its code and its messages.
type locale struct {
	Code string            // "ja" or "en"
	M    map[string]string // message key → text
}

// T returns the message for key, or key itself when missing.
func (l locale) T(key string) string {
	if m, ok := l.M[key]; ok {
		return m
	}
	if m, ok := hardeningMessages[l.Code][key]; ok {
		return m
	}
	if m, ok := uxMessages[l.Code][key]; ok {
		return m
	}
	return key
}

// English comes first: it is the answer unless the client asks for
// Japanese, so the CLI, curl and JSON clients that send no Accept-Language
// get messages they can read. Japanese browsers send "ja" and get Japanese.
var langMatcher = language.NewMatcher([]language.Tag{language.English, language.Japanese})

// lang picks English or Japanese from Accept-Language (English unless
// Japanese is the better match); ?lang=en|ja overrides it.
func lang(c *gin.Context) locale {
	switch c.Query("lang") {
	case "en":
		return locale{"en", messagesEN}
	case "ja":
		return locale{"ja", messagesJA}
	}
	tags, _, _ := language.ParseAcceptLanguage(c.GetHeader("Accept-Language"))
	_, i, conf := langMatcher.Match(tags...)
	if i == 1 && conf != language.No {
		return locale{"ja", messagesJA}
	}
	return locale{"en", messagesEN}
}

var messagesJA = map[string]string{
	"app_title":         "CSV帳票作成",
	"upload_title":      "CSVアップロード",
	"csv_file":          "CSVファイル",
	"csv_type":          "出力形式",
	"type_xlsx":         "Excel (xlsx)",
	"type_pdf":          "PDF",
	"type_text":         "テキスト",
	"template":          "テンプレート (XLSX、任意)",
	"encoding":          "文字コード",
	"enc_auto":          "自動判定",
	"submit":            "アップロード",
	"status_list":       "処理状況一覧",
	"status_title":      "処理状況",
	"token":             "トークン",
	"state":             "状態",
	"state_pending":     "待機中",
	"state_processing":  "処理中",
	"state_completed":   "完了",
	"state_failed":      "失敗",
	"state_splitting":   "分割中",
	"state_cancelled":   "キャンセル済み",
	"stalled":           "停滞中",
	"duration":          "所要時間",
	"cancel_run":        "キャンセル",
	"retry_failed":      "失敗した行を再実行",
	"failed_rows":       "失敗した行",
	"row":               "行",
	"reason":            "理由",
	"page":              "ページ",
	"prev":              "前へ",
	"next":              "次へ",
	"err_run_ended":     "この処理はすでに終了しています。",
	"err_retry_busy":    "この処理の再実行はすでに進行中です。",
	"err_not_retryable": "再実行できるのは、失敗した行のある完了済みの処理だけです。",
	"err_bad_page":      "page は 1 以上の整数で指定してください。",
	"err_bad_webhook":   "webhook_url は http または https の URL で指定してください。",
	"progress":          "進捗",
	"done":              "完了件数",
	"failed":            "失敗件数",
	"total":             "総件数",
	"rate":              "処理速度 (行/秒)",
	"eta":               "残り時間",
	"queue":             "キュー",
	"worker_task":       "ワーカータスク",
	"worker_started_at": "ワーカー開始",
	"finalized_at":      "完了処理",
	"created_at":        "作成日時",
	"updated_at":        "更新日時",
	"last_error":        "最新のエラー",
	"report_id":         "レポートID",
	"download":          "ダウンロード",
	"no_runs":           "処理はまだありません。",
	"new_upload":        "新規アップロード",
	"error_title":       "エラー",
	"err_not_found":     "見つかりません。",
	"err_method":        "このメソッドは使えません。",
	"err_bad_token":     "トークンの形式が正しくありません。",
	"err_no_file":       "CSVファイルを選択してください。",
	"err_not_multipart": "multipart/form-data で送信してください。",
	"err_too_large":     "ファイルが大きすぎます。",
	"err_not_csv":       "CSVファイルではないようです。",
	"err_bad_template":  "テンプレートはXLSXファイルを指定してください。",
	"err_bad_type":      "出力形式は xlsx、pdf、text のいずれかです。",
	"err_bad_encoding":  "文字コードは auto、utf-8、shift_jis、cp932 のいずれかです。",
	"err_bad_limit":     "limit は 1 から 100 の整数です。",
	"err_unauthorized":  "認証が必要です。",
	"err_csrf":          "フォームの有効期限が切れました。ページを再読み込みしてください。",
	"err_job_gone":      "ジョブはもうありません。",
	"err_bad_request":   "リクエストが正しくありません。",
	"err_unavailable":   "一時的に利用できません。しばらくしてから再度お試しください。",
	"err_internal":      "サーバーでエラーが発生しました。",
	"err_canceled":      "キャンセルされました。",
}

var messagesEN = map[string]string{
	"app_title":         "CSV reports",
	"upload_title":      "Upload a CSV",
	"csv_file":          "CSV file",
	"csv_type":          "Output",
	"type_xlsx":         "Excel (xlsx)",
	"type_pdf":          "PDF",
	"type_text":         "Text",
	"template":          "Template (XLSX, optional)",
	"encoding":          "Encoding",
	"enc_auto":          "Detect",
	"submit":            "Upload",
	"status_list":       "Recent runs",
	"status_title":      "Run status",
	"token":             "Token",
	"state":             "State",
	"state_pending":     "pending",
	"state_processing":  "processing",
	"state_completed":   "completed",
	"state_failed":      "failed",
	"state_splitting":   "splitting",
	"state_cancelled":   "cancelled",
	"stalled":           "stalled",
	"duration":          "Duration",
	"cancel_run":        "Cancel",
	"retry_failed":      "Retry failed rows",
	"failed_rows":       "Failed rows",
	"row":               "Row",
	"reason":            "Reason",
	"page":              "Page",
	"prev":              "Previous",
	"next":              "Next",
	"err_run_ended":     "This run has already ended.",
	"err_retry_busy":    "A retry of this run is already under way.",
	"err_not_retryable": "Only a completed run with failed rows can be retried.",
	"err_bad_page":      "page must be an integer from 1.",
	"err_bad_webhook":   "webhook_url must be an http or https URL.",
	"progress":          "Progress",
	"done":              "Done",
	"failed":            "Failed",
	"total":             "Total",
	"rate":              "Rate (rows/s)",
	"eta":               "ETA",
	"queue":             "Queue",
	"worker_task":       "Worker task",
	"worker_started_at": "Worker started",
	"finalized_at":      "Finalized",
	"created_at":        "Created",
	"updated_at":        "Updated",
	"last_error":        "Last error",
	"report_id":         "Report ID",
	"download":          "Download",
	"no_runs":           "No runs yet.",
	"new_upload":        "New upload",
	"error_title":       "Error",
	"err_not_found":     "Not found.",
	"err_method":        "Method not allowed.",
	"err_bad_token":     "The token is malformed.",
	"err_no_file":       "Choose a CSV file.",
	"err_not_multipart": "Send the form as multipart/form-data.",
	"err_too_large":     "The file is too large.",
	"err_not_csv":       "This does not look like a CSV file.",
	"err_bad_template":  "The template must be an XLSX file.",
	"err_bad_type":      "The output must be xlsx, pdf or text.",
	"err_bad_encoding":  "The encoding must be auto, utf-8, shift_jis or cp932.",
	"err_bad_limit":     "limit must be an integer from 1 to 100.",
	"err_unauthorized":  "Authentication required.",
	"err_csrf":          "The form expired. Reload the page and try again.",
	"err_job_gone":      "The job is gone.",
	"err_bad_request":   "Bad request.",
	"err_unavailable":   "Temporarily unavailable. Try again shortly.",
	"err_internal":      "Something went wrong on the server.",
	"err_canceled":      "Canceled.",
}
