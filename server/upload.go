package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/storage"
)

// reportTypes are the csv_type values the form accepts; "" and "default"
// mean xlsx, as SplitCsvJob reads them.
var reportTypes = map[string]models.ReportType{
	"":        models.ReportTypeXLSX,
	"default": models.ReportTypeXLSX,
	"xlsx":    models.ReportTypeXLSX,
	"pdf":     models.ReportTypePDF,
	"text":    models.ReportTypeText,
}

// encodings are the encoding values the form accepts (csvrows reads them).
var encodings = map[string]bool{"": true, "auto": true, "utf-8": true, "shift_jis": true, "cp932": true}

// sniffSize is how much of a file is checked before it is stored.
const sniffSize = 1024

func (s *Server) newForm(c *gin.Context) {
	l := lang(c)
	s.render(c, http.StatusOK, "new.html", pageData{Lang: l, Title: l.T("upload_title"), Data: struct {
		MaxBytes int64
		PDF      bool
	}{s.d.MaxUploadBytes, s.typeAvailable("pdf")}})
}

// uploadResult is the 201 answer to an API client.
type uploadResult struct {
	Token     string `json:"token"`
	ReportID  int64  `json:"report_id"`
	Queue     string `json:"queue"`
	StatusURL string `json:"status_url"`
}

// upload is POST /csv_processing: it streams the CSV (and the optional
// template) into storage part by part, never holding a file in memory,
// records the ClientReport and enqueues SplitCsvJob with a storage
// reference instead of the CSV text the Rails controller sends.
func (s *Server) upload(c *gin.Context) {
	ctx := c.Request.Context()
	if c.Request.ContentLength > s.d.MaxUploadBytes {
		c.Header("Connection", "close")
		s.fail(c, &http.MaxBytesError{Limit: s.d.MaxUploadBytes})
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.d.MaxUploadBytes)
	c.Request.Body = s.minRate(c, c.Request.Body)
	// A browser must prove the form is ours: the token in a header or in a
	// field ahead of the file (checked in readUpload, before the file is read).
	needToken := browserRequest(c.Request)
	if needToken {
		if h := c.GetHeader(csrfHeader); h != "" {
			if !s.csrfValid(c, h) {
				s.fail(c, userErr(http.StatusForbidden, "err_csrf", ""))
				return
			}
			needToken = false
		}
	}
	idem, replay, err := s.claimIdempotency(ctx, c.GetHeader("Idempotency-Key"))
	if err != nil {
		s.fail(c, err)
		return
	}
	if replay != "" {
		s.answerUpload(c, replay, http.StatusOK)
		return
	}
	ok := false
	defer func() {
		if !ok {
			s.releaseIdempotency(ctx, idem)
		}
	}()
	// A type in the query is checked before the body is read, so a client
	// that puts it there (the CLI does) is refused before it sends the file.
	typ, err := checkType(c.Query("csv_type"))
	if err != nil {
		c.Header("Connection", "close")
		s.fail(c, err)
		return
	}
	if !s.typeAvailable(typ) {
		c.Header("Connection", "close")
		s.fail(c, userErr(http.StatusUnprocessableEntity, "err_type_unavailable", typ))
		return
	}
	mr, err := c.Request.MultipartReader()
	if err != nil {
		s.fail(c, &httpError{status: http.StatusBadRequest, key: "err_not_multipart", err: err})
		return
	}
	token := router.NewToken()
	queue, err := s.d.Router.For(token)
	if err != nil {
		s.fail(c, err)
		return
	}
	f, err := s.readUpload(ctx, c, mr, token, needToken, typ)
	if rr, isRate := c.Request.Body.(*rateReader); isRate && rr.timedOut {
		// The multipart parser may report the cut as a malformed header.
		err = userErr(http.StatusRequestTimeout, "err_too_slow", "")
	}
	if err != nil {
		// The rest of the body is not read: the connection closes after
		// the answer, which the client gets before it sends the rest.
		c.Header("Connection", "close")
		s.discard(ctx, f.stored)
		s.fail(c, err)
		return
	}
	report := models.ClientReport{
		Status:     models.ReportPending,
		ReportType: reportTypes[f.typ],
		Token:      token,
		SourceKey:  contract.UploadKey(token),
		SourceName: f.name,
		WebhookURL: f.webhookURL,
	}
	if err := s.d.DB.CreateReport(ctx, &report); err != nil {
		s.discard(ctx, f.stored)
		s.fail(c, err)
		return
	}
	ref := contract.SourceRef{SourceKey: contract.UploadKey(token), Token: token, Encoding: f.encoding}
	if f.template {
		ref.TemplateKey = contract.TemplateKey(token)
	}
	typ = f.typ
	if typ == "" || typ == "default" {
		typ = "xlsx"
	}
	split := contract.SplitJob(contract.SplitArgs{Source: ref, Type: typ, ReportID: report.ID})
	job, err := sidekiq.NewActiveJob(s.d.Dialect, split.Class.Name, split.Queue, split.Args...)
	if err == nil {
		_, err = s.d.Client.Push(ctx, job)
	}
	if err != nil {
		// The upload is kept so an operator can re-enqueue; the report says why it stopped.
		_ = s.d.DB.MarkReportFailed(context.WithoutCancel(ctx), report.ID, "enqueue SplitCsvJob: "+err.Error())
		s.fail(c, &httpError{status: http.StatusServiceUnavailable, key: "err_unavailable", err: fmt.Errorf("enqueue split for %s: %w", token, err)})
		return
	}
	ok = true
	s.finishIdempotency(ctx, idem, token)
	s.log.Info("upload accepted", "token", token, "report_id", report.ID, "queue", queue, "type", typ, "bytes", f.size)
	s.answerUpload(c, token, http.StatusCreated)
}

// answerUpload sends an accepted upload's answer: 201 JSON (or status for
// a replayed Idempotency-Key) to an API client, 303 to the status page to
// a browser.
func (s *Server) answerUpload(c *gin.Context, token string, status int) {
	statusURL := "/csv_processing/" + token
	if !wantsJSON(c) {
		c.Redirect(http.StatusSeeOther, statusURL)
		return
	}
	res := uploadResult{Token: token, Queue: "", StatusURL: statusURL}
	res.Queue, _ = s.d.Router.For(token)
	if rep, err := s.d.DB.ReportByToken(c.Request.Context(), token); err == nil {
		res.ReportID = rep.ID
	}
	c.Header("Location", statusURL)
	c.JSON(status, res)
}

// uploadForm is what readUpload collected.
type uploadForm struct {
	typ, encoding string
	name          string // the CSV's file name as sent
	webhookURL    string // called when the run ends (run/webhook)
	template      bool
	placeholders  []string // the template's {{column}} names
	headers       []string // the CSV's columns, as the split will read them
	size          int64
	stored        []string // keys written, removed again when the request fails
}

// readUpload reads the multipart parts in whatever order they come. Fields
// that arrive before the file are checked before the file is read. With
// needToken, the CSRF field must come (valid) before any file.
func (s *Server) readUpload(ctx context.Context, c *gin.Context, mr *multipart.Reader, token string, needToken bool, typ string) (uploadForm, error) {
	f := uploadForm{typ: typ}
	csv, empty := false, false
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return f, badBody(err)
		}
		if needToken && part.FileName() != "" {
			return f, userErr(http.StatusForbidden, "err_csrf", "")
		}
		switch part.FormName() {
		case csrfField:
			v, err := smallField(part)
			if err != nil {
				return f, err
			}
			if !s.csrfValid(c, v) {
				return f, userErr(http.StatusForbidden, "err_csrf", "")
			}
			needToken = false
		case "csv_file":
			if part.FileName() == "" {
				break // an empty file input
			}
			f.name = cleanFileName(part.FileName())
			check := startHeaderCheck(f.encoding)
			n, err := s.storeCSV(ctx, part, contract.UploadKey(token), check)
			check.close()
			f.headers = check.headers
			if n > 0 {
				f.stored = append(f.stored, contract.UploadKey(token))
				f.size, csv = n, true
			}
			if err != nil {
				return f, err
			}
			empty = n == 0
		case "template":
			if part.FileName() == "" {
				break
			}
			n, placeholders, err := s.storeTemplate(ctx, part, contract.TemplateKey(token))
			f.placeholders = placeholders
			if n > 0 {
				f.stored = append(f.stored, contract.TemplateKey(token))
				f.template = true
			}
			if err != nil {
				return f, err
			}
		case "csv_type":
			if f.typ, err = smallField(part); err != nil {
				return f, err
			}
			if f.typ, err = checkType(f.typ); err != nil {
				return f, err
			}
			if !s.typeAvailable(f.typ) {
				return f, userErr(http.StatusUnprocessableEntity, "err_type_unavailable", f.typ)
			}
		case "webhook_url":
			if f.webhookURL, err = webhookField(part); err != nil {
				return f, err
			}
		case "encoding":
			if f.encoding, err = smallField(part); err != nil {
				return f, err
			}
			f.encoding = strings.ToLower(f.encoding)
			if !encodings[f.encoding] {
				return f, userErr(http.StatusUnprocessableEntity, "err_bad_encoding", f.encoding)
			}
		}
		// Unread bytes of other parts are skipped by NextPart.
	}
	if needToken {
		return f, userErr(http.StatusForbidden, "err_csrf", "")
	}
	if !csv {
		if empty {
			return f, userErr(http.StatusUnprocessableEntity, "err_empty_file", f.name)
		}
		return f, userErr(http.StatusBadRequest, "err_no_file", "")
	}
	return f, templateApplies(f)
}

// checkType returns typ lower-cased when the form accepts it.
func checkType(typ string) (string, error) {
	typ = strings.ToLower(strings.TrimSpace(typ))
	if _, ok := reportTypes[typ]; !ok {
		return typ, userErr(http.StatusUnprocessableEntity, "err_bad_type", typ)
	}
	return typ, nil
}

// templateApplies refuses a template the run could not use: one sent with
// a type other than xlsx (the row jobs would ignore it), or one none of
// whose placeholders names a column of the CSV (every filled cell would be
// empty).
func templateApplies(f uploadForm) error {
	if !f.template {
		return nil
	}
	if reportTypes[f.typ] != models.ReportTypeXLSX {
		return userErr(http.StatusUnprocessableEntity, "err_template_type", f.typ)
	}
	if len(f.placeholders) == 0 || len(f.headers) == 0 {
		return nil
	}
	for _, p := range f.placeholders {
		if slices.Contains(f.headers, p) {
			return nil
		}
	}
	return userErr(http.StatusUnprocessableEntity, "err_template_columns",
		fmt.Sprintf("placeholders %s; columns %s", truncate(strings.Join(f.placeholders, ", "), 200), truncate(strings.Join(f.headers, ", "), 200)))
}

// webhookField reads an optional webhook_url: an http or https URL.
func webhookField(p *multipart.Part) (string, error) {
	b, err := io.ReadAll(io.LimitReader(p, 2049))
	if err != nil {
		return "", badBody(err)
	}
	u := strings.TrimSpace(string(b))
	if u == "" {
		return "", nil
	}
	if err := contract.ValidWebhookURL(u); err != nil {
		return "", userErr(http.StatusUnprocessableEntity, "err_bad_webhook", "")
	}
	return u, nil
}

// storeCSV checks the first KiB of part with sniffCSV, then streams the
// whole part to key through check, refusing a NUL byte anywhere. n is the
// bytes read into storage, 0 when the part was empty or refused (nothing
// stored).
func (s *Server) storeCSV(ctx context.Context, part io.Reader, key string, check *headerCheck) (int64, error) {
	br := bufio.NewReaderSize(part, 4096)
	head, err := br.Peek(sniffSize)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return 0, badBody(err)
	}
	if len(head) == 0 {
		return 0, nil
	}
	if err := sniffCSV(head); err != nil {
		return 0, err
	}
	cr := &countingReader{r: check.watch(br), noNUL: true}
	if err := s.d.Store.Put(ctx, key, cr); err != nil {
		var mbe *http.MaxBytesError
		var he *httpError
		if errors.As(err, &mbe) || errors.As(err, &he) || errors.Is(err, storage.ErrBadKey) {
			return cr.n, err
		}
		return cr.n, fmt.Errorf("store %s: %w", key, err)
	}
	return cr.n, nil
}

// storeTemplate reads an XLSX template (it is small: at most
// TemplateLimits.MaxBytes), checks it as the row jobs will read it, and
// stores it. A template too big in any way is refused with 413, one that is
// not an XLSX workbook with 422, before anything is stored.
func (s *Server) storeTemplate(ctx context.Context, part *multipart.Part, key string) (int64, []string, error) {
	limits := s.d.TemplateLimits.WithDefaults()
	data, err := io.ReadAll(io.LimitReader(part, limits.MaxBytes+1))
	if err != nil {
		return 0, nil, badBody(err)
	}
	if len(data) == 0 {
		return 0, nil, nil
	}
	if err := sniffXLSX(data); err != nil {
		return 0, nil, err
	}
	placeholders, err := render.CheckTemplate(data, limits)
	if err != nil {
		status, msgKey := http.StatusUnprocessableEntity, "err_bad_template"
		if errors.Is(err, render.ErrTemplateTooBig) {
			status, msgKey = http.StatusRequestEntityTooLarge, "err_template_too_large"
		}
		return 0, nil, &httpError{status: status, key: msgKey, detail: templateDetail(err)}
	}
	if err := s.d.Store.Put(ctx, key, bytes.NewReader(data)); err != nil {
		return 0, nil, fmt.Errorf("store %s: %w", key, err)
	}
	return int64(len(data)), placeholders, nil
}

// templateDetail is the part of a template error a user can act on.
func templateDetail(err error) string {
	msg := err.Error()
	for _, sentinel := range []error{render.ErrTemplateTooBig, render.ErrBadTemplate} {
		msg = strings.TrimPrefix(msg, sentinel.Error()+": ")
	}
	return msg
}

// badBody classifies an error reading the request body: too large (413)
// or malformed (400).
func badBody(err error) error {
	var mbe *http.MaxBytesError
	var he *httpError
	if errors.As(err, &mbe) || errors.As(err, &he) {
		return err
	}
	return &httpError{status: http.StatusBadRequest, key: "err_bad_request", err: err}
}

// smallField reads a short text field.
func smallField(p *multipart.Part) (string, error) {
	b, err := io.ReadAll(io.LimitReader(p, 256))
	if err != nil {
		return "", badBody(err)
	}
	return strings.TrimSpace(string(b)), nil
}

// discard removes what a failed upload stored.
func (s *Server) discard(ctx context.Context, keys []string) {
	ctx = context.WithoutCancel(ctx)
	for _, k := range keys {
		if err := s.d.Store.Delete(ctx, k); err != nil {
			s.log.Warn("remove upload of failed request", "key", k, "err", err)
		}
	}
}

// binaryMagic are file signatures people upload by mistake instead of a CSV.
var binaryMagic = [][]byte{
	[]byte("PK\x03\x04"),       // zip, xlsx
	[]byte("\xD0\xCF\x11\xE0"), // xls, doc
	[]byte("%PDF-"),            // pdf
	[]byte("\x89PNG"),          // png
	[]byte("\xFF\xD8\xFF"),     // jpeg
	[]byte("GIF8"),             // gif
	[]byte("\x1F\x8B"),         // gzip
	{0xFF, 0xFE}, {0xFE, 0xFF}, // UTF-16: csvrows reads UTF-8 and Shift_JIS only
}

// sniffCSV refuses a head that is not text: a known binary signature, a NUL
// byte, or many control characters. Shift_JIS passes (it has no NULs).
func sniffCSV(head []byte) error {
	for _, m := range binaryMagic {
		if bytes.HasPrefix(head, m) {
			return userErr(http.StatusUnsupportedMediaType, "err_not_csv", "")
		}
	}
	if i := bytes.IndexByte(head, 0); i >= 0 {
		return userErr(http.StatusUnsupportedMediaType, "err_not_csv", fmt.Sprintf("NUL at byte %d", i))
	}
	ctl := 0
	for _, b := range head {
		if b < 0x20 && b != '\t' && b != '\n' && b != '\r' && b != '\f' && b != 0x1A {
			ctl++
		}
	}
	if ctl*20 > len(head) {
		return userErr(http.StatusUnsupportedMediaType, "err_not_csv", "control characters")
	}
	return nil
}

// sniffXLSX wants a zip signature (an XLSX is a zip).
func sniffXLSX(head []byte) error {
	if !bytes.HasPrefix(head, []byte("PK\x03\x04")) {
		return userErr(http.StatusUnsupportedMediaType, "err_bad_template", "")
	}
	return nil
}

// countingReader counts the bytes read through it. With noNUL it fails
// the read (and so the store) at the first NUL byte anywhere in the file:
// a CSV never holds one, and one past the sniffed head would otherwise
// fail the whole run later, in the worker.
type countingReader struct {
	r     io.Reader
	n     int64
	noNUL bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.noNUL {
		if i := bytes.IndexByte(p[:n], 0); i >= 0 {
			return 0, userErr(http.StatusUnsupportedMediaType, "err_not_csv", fmt.Sprintf("NUL at byte %d", c.n+int64(i)))
		}
	}
	c.n += int64(n)
	return n, err
}

// cleanFileName keeps the base name of an uploaded file, printable and at
// most 200 bytes, for display.
func cleanFileName(name string) string {
	name = path.Base(strings.ReplaceAll(name, "\\", "/"))
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, name)
	if name == "." || name == "/" {
		return ""
	}
	return truncate(name, 200)
}

// typeAvailable reports whether the workers can render typ ("" and
// "default" are xlsx).
func (s *Server) typeAvailable(typ string) bool {
	if s.d.ReportTypes == nil {
		return true
	}
	if typ == "" || typ == "default" {
		typ = "xlsx"
	}
	return slices.Contains(s.d.ReportTypes, typ)
}
