package server

import (
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net/http"

	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/models"
)

// noRunMade fails if a refused upload left anything behind: a
// client_reports or csv_processing_statuses row, a key in Redis, a stored file.
func noRunMade(t *testing.T, b *bundle) {
	t.Helper()
	var reports, statuses int64
	if err := b.db.DB.Model(&models.ClientReport{}).Count(&reports).Error; err != nil {
		t.Fatal(err)
	}
	if err := b.db.DB.Model(&models.CsvProcessingStatus{}).Count(&statuses).Error; err != nil {
		t.Fatal(err)
	}
	if reports != 0 || statuses != 0 {
		t.Errorf("a refused upload made %d client_reports and %d csv_processing_statuses rows", reports, statuses)
	}
	if keys, err := redis.Strings(b.redis.Do(t, "KEYS", "*"), nil); err != nil || len(keys) != 0 {
		t.Errorf("Redis after a refused upload: %v %v", keys, err)
	}
	for _, dir := range []string{"uploads/", "templates/"} {
		if infos, _ := b.store.List(context.Background(), dir); len(infos) != 0 {
			t.Errorf("%s kept: %v", dir, infos)
		}
	}
}

func TestUploadRefusesWhatCannotSucceed(t *testing.T) {
	t.Parallel()
	wide := make([]string, 10_000)
	for i := range wide {
		wide[i] = "c" + string(rune('a'+i%26)) + strings.Repeat("x", i%7) + "_" + itoa(int64(i))
	}
	wideCSV := strings.Join(wide, ",") + "\n" + strings.Repeat("1,", 9_999) + "1\n"
	tests := []struct {
		name  string
		parts []part
		want  int
		msg   string
	}{
		{"10,000 columns", []part{{name: "csv_file", file: "wide.csv", value: wideCSV}}, http.StatusUnprocessableEntity,
			"The CSV has too many columns. (header has more than 1000 columns)"},
		{"header only", []part{{name: "csv_file", file: "h.csv", value: "id,name\n"}}, http.StatusUnprocessableEntity,
			"The CSV has a header row and no data rows."},
		{"header only, blank lines", []part{{name: "csv_file", file: "h.csv", value: "id,name\r\n\r\n\r\n"}}, http.StatusUnprocessableEntity,
			"no data rows"},
		{"duplicate columns", []part{{name: "csv_file", file: "d.csv", value: "id,id\n1,2\n"}}, http.StatusUnprocessableEntity,
			"header row cannot be read"},
		{"docx after the file", []part{{name: "csv_file", file: "a.csv", value: sampleCSV}, {name: "csv_type", value: "docx"}},
			http.StatusUnprocessableEntity, "The output must be xlsx, pdf or text. (docx)"},
		{"template with pdf", []part{{name: "csv_type", value: "pdf"}, {name: "template", file: "t.xlsx", value: string(xlsxTemplate(t, 1))},
			{name: "csv_file", file: "a.csv", value: "col\nx\n"}}, http.StatusUnprocessableEntity, "A template applies to xlsx output only."},
		{"template naming no column", []part{{name: "csv_file", file: "a.csv", value: sampleCSV}, {name: "template", file: "t.xlsx", value: string(xlsxTemplate(t, 1))}},
			http.StatusUnprocessableEntity, "No {{…}} placeholder of the template names a column of the CSV. (placeholders col; columns 個別識別番号, 保険者名, 年度)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			body, ctype := multipartBody(t, tt.parts...)
			resp, out := b.do(t, http.MethodPost, "/csv_processing", body, "Content-Type", ctype, "Accept", "application/json", "Accept-Language", "en")
			if resp.StatusCode != tt.want || !strings.Contains(out, tt.msg) {
				t.Errorf("status %d %s, want %d with %q", resp.StatusCode, out, tt.want, tt.msg)
			}
			noRunMade(t, b)
		})
	}
}

func TestUploadAcceptsAFirstRowOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	// One data row and no final line break; and a template naming one column.
	for _, parts := range [][]part{
		{{name: "csv_file", file: "one.csv", value: "id,name\n1,a"}},
		{{name: "template", file: "t.xlsx", value: string(xlsxTemplate(t, 1))}, {name: "csv_file", file: "a.csv", value: "id,col\n1,x\n"}},
	} {
		body, ctype := multipartBody(t, parts...)
		resp, out := b.do(t, http.MethodPost, "/csv_processing", body, "Content-Type", ctype, "Accept", "application/json")
		wantStatus(t, resp, out, http.StatusCreated)
	}
}

// heldBody is an upload body whose rest is held back until release: a
// server that answers while it is held answered before reading the file.
type heldBody struct {
	head     io.Reader
	rest     io.Reader
	release  chan struct{}
	released atomic.Bool
}

func (h *heldBody) Read(p []byte) (int, error) {
	if n, err := h.head.Read(p); n > 0 || err != io.EOF {
		return n, err
	}
	<-h.release
	h.released.Store(true)
	return h.rest.Read(p)
}

func TestUploadBadTypeRefusedBeforeTheBody(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	big := "id,name\n" + strings.Repeat("1,abcdefghijklmnopqrstuvwxyz\n", 200_000) // 5.6 MB
	for _, viaQuery := range []bool{true, false} {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		if !viaQuery {
			mw.WriteField("csv_type", "docx")
		}
		fw, _ := mw.CreateFormFile("csv_file", "big.csv")
		io.WriteString(fw, big)
		mw.Close()
		all := buf.Bytes()
		cut := bytes.Index(all, []byte("id,name")) + 8 // the file's first line is sent, the rest held
		body := &heldBody{head: bytes.NewReader(all[:cut]), rest: bytes.NewReader(all[cut:]), release: make(chan struct{})}
		timer := time.AfterFunc(20*time.Second, func() { close(body.release) })
		path := "/csv_processing"
		if viaQuery {
			path += "?csv_type=docx"
		}
		req, _ := http.NewRequest(http.MethodPost, b.ts.URL+path, body)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if timer.Stop() {
			close(body.release)
		}
		if body.released.Load() {
			t.Errorf("query %v: the server read the whole file before answering %d", viaQuery, resp.StatusCode)
		}
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(out), "docx") {
			t.Errorf("query %v: %d %s", viaQuery, resp.StatusCode, out)
		}
	}
	noRunMade(t, b)
}
