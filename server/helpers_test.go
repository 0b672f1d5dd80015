package server

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/models/modelstest"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/storage"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode) // quiet gin's debug route dump in tests
	os.Exit(m.Run())
}

// bundle is one test's running server and what it talks to.
type bundle struct {
	srv    *Server
	ts     *httptest.Server
	redis  *redistest.DB
	store  *storage.Local
	db     *models.Store
	client *http.Client // keeps cookies, does not follow redirects
}

// setup starts a Server on real Redis, a temp SQLite file and a temp
// directory store; tweak adjusts Deps before New.
func setup(t *testing.T, tweak func(*Deps)) *bundle {
	t.Helper()
	rdb := redistest.New(t)
	gdb := modelstest.SQLite(t)
	st, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := Deps{
		Pool:          rdb.Pool,
		Client:        sidekiq.NewClient(rdb.Pool, sidekiq.ClientOptions{}),
		API:           sidekiq.NewAPI(rdb.Pool, sidekiq.Dialect8),
		DB:            models.NewStore(gdb),
		Store:         st,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		EventInterval: 20e6, // 20ms
	}
	if tweak != nil {
		tweak(&d)
	}
	srv, err := New(d)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	jar, _ := cookiejar.New(nil)
	cl := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &bundle{srv: srv, ts: ts, redis: rdb, store: st, db: d.DB, client: cl}
}

// do sends a request and returns the response with its body read.
func (b *bundle) do(t *testing.T, method, path string, body io.Reader, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, b.ts.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1] // what a rebound name would send
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(data)
}

// get is do for GET.
func (b *bundle) get(t *testing.T, path string, header ...string) (*http.Response, string) {
	t.Helper()
	return b.do(t, http.MethodGet, path, nil, header...)
}

// wantStatus fails unless resp has status want.
func wantStatus(t *testing.T, resp *http.Response, body string, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s %s = %d, want %d; body: %.500s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, want, body)
	}
}

// part is one multipart part: a field (file == "") or a file.
type part struct{ name, file, value string }

// multipartBody encodes parts in order.
func multipartBody(t *testing.T, parts ...part) (*bytes.Buffer, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, p := range parts {
		var err error
		if p.file != "" {
			var fw io.Writer
			fw, err = w.CreateFormFile(p.name, p.file)
			if err == nil {
				_, err = io.WriteString(fw, p.value)
			}
		} else {
			err = w.WriteField(p.name, p.value)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf, w.FormDataContentType()
}

// decode unmarshals a JSON body.
func decode(t *testing.T, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
}

var csrfRE = regexp.MustCompile(`name="authenticity_token" value="([^"]+)"`)

// csrfToken reads the form token from a dashboard page.
func csrfToken(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF field in page: %.300s", page)
	}
	return m[1]
}

// form encodes url form values from pairs.
func form(kv ...string) io.Reader {
	var sb strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			sb.WriteByte('&')
		}
		sb.WriteString(url.QueryEscape(kv[i]) + "=" + url.QueryEscape(kv[i+1]))
	}
	return strings.NewReader(sb.String())
}

// newMultipartStream is a multipart writer on w.
func newMultipartStream(w io.Writer) *multipart.Writer { return multipart.NewWriter(w) }
