package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// TestSecurityHeaders: every answer (pages, errors, probes, JSON) carries
// the CSP with frame-ancestors, nosniff and a Referrer-Policy, and a page's
// scripts carry the CSP nonce while inline handlers are gone.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	token, _ := newRun(t, b, true)
	for _, path := range []string{"/", "/csv_processing/status", "/csv_processing/" + token, "/sidekiq", "/sidekiq/retries", "/nope", "/up",
		"/csv_processing/status?format=json"} {
		resp, body := b.get(t, path)
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"frame-ancestors 'none'", "default-src 'none'", "script-src 'nonce-"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") != "same-origin" {
			t.Errorf("%s: headers %v", path, resp.Header)
		}
		nonce := regexp.MustCompile(`'nonce-([^']+)'`).FindStringSubmatch(csp)
		if strings.Contains(body, "<script>") || (strings.Contains(body, "<script") && !strings.Contains(body, `<script nonce="`+nonce[1]+`">`)) {
			t.Errorf("%s: a script without the nonce", path)
		}
		if strings.Contains(body, "onsubmit=") || strings.Contains(body, "onclick=") {
			t.Errorf("%s: inline event handler (refused by the CSP)", path)
		}
	}
}

// TestBodyLimits: a 300 MB POST to the dashboard is refused by its
// declared length before anything reads it, and a chunked one is cut at
// the cap (413), before the CSRF check.
func TestBodyLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	// Declared length: answered without reading the body at all.
	conn, err := net.Dial("tcp", strings.TrimPrefix(b.ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /sidekiq/retries HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 300000000\r\n\r\naction=delete_all&")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("declared 300 MB: %d, want 413", resp.StatusCode)
	}
	// Chunked (no length): read up to the cap, then 413.
	pr, pw := io.Pipe()
	go func() {
		chunk := []byte(strings.Repeat("a", 64<<10))
		for i := 0; i < 100; i++ { // 6.4 MB offered, the cap is 1 MiB
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	resp2, body := b.do(t, http.MethodPost, "/sidekiq/retries", pr, "Content-Type", "application/x-www-form-urlencoded")
	pr.CloseWithError(io.ErrClosedPipe)
	wantStatus(t, resp2, body, http.StatusRequestEntityTooLarge)
	// Other routes too.
	resp3, body := b.do(t, http.MethodPost, "/login", strings.NewReader(strings.Repeat("x", 2<<20)), "Content-Type", "application/x-www-form-urlencoded")
	wantStatus(t, resp3, body, http.StatusRequestEntityTooLarge)
}

// TestUploadCSRF replays the attack: a cross-site form carrying a
// browser's cached basic-auth credentials is refused, by Origin and by
// Sec-Fetch-Site. A same-origin browser form needs the token ahead of the
// file; the CLI and curl (no Origin, no Sec-Fetch-Site) keep working with
// their credentials.
func TestUploadCSRF(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *Deps) { d.BasicUser, d.BasicPassword = "admin", "pw" })
	post := func(parts []part, header ...string) (*http.Response, string) {
		body, ctype := multipartBody(t, parts...)
		req, _ := http.NewRequest(http.MethodPost, b.ts.URL+"/csv_processing", body)
		req.SetBasicAuth("admin", "pw")
		req.Header.Set("Content-Type", ctype)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := b.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp, string(out)
	}
	file := []part{{name: "csv_file", file: "a.csv", value: sampleCSV}}
	resp, body := post(file, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	wantStatus(t, resp, body, http.StatusForbidden)
	resp, body = post(file, "Origin", "https://evil.example")
	wantStatus(t, resp, body, http.StatusForbidden)
	resp, body = post(file, "Sec-Fetch-Site", "same-site")
	wantStatus(t, resp, body, http.StatusForbidden)
	resp, body = post(file, "Origin", "null")
	wantStatus(t, resp, body, http.StatusForbidden)
	origin := b.ts.URL
	// Same origin but no token: refused before the file is stored.
	resp, body = post(file, "Origin", origin, "Sec-Fetch-Site", "same-origin")
	wantStatus(t, resp, body, http.StatusForbidden)
	// The form's token, from the page, ahead of the file: accepted.
	req, _ := http.NewRequest(http.MethodGet, b.ts.URL+"/", nil)
	req.SetBasicAuth("admin", "pw")
	r, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(r.Body)
	r.Body.Close()
	tok := csrfToken(t, string(page))
	resp, body = post(append([]part{{name: "authenticity_token", value: tok}}, file...), "Origin", origin, "Sec-Fetch-Site", "same-origin")
	wantStatus(t, resp, body, http.StatusSeeOther)
	// A wrong token is refused; so is a right one after the file.
	resp, body = post(append([]part{{name: "authenticity_token", value: "x" + tok}}, file...), "Origin", origin)
	wantStatus(t, resp, body, http.StatusForbidden)
	resp, body = post(append(file, part{name: "authenticity_token", value: tok}), "Origin", origin)
	wantStatus(t, resp, body, http.StatusForbidden)
	// The header form works for scripts on our own pages.
	resp, body = post(file, "Origin", origin, "X-CSRF-Token", tok, "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusCreated)
	// An API client with credentials: no browser headers, no token.
	resp, body = post(file, "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusCreated)
	if n, _ := redis.Int(b.redis.Do(t, "LLEN", "queue:report"), nil); n != 3 {
		t.Errorf("%d uploads enqueued, want 3", n)
	}
}

// TestLogin: with AUTH_TOKEN alone a browser is sent to /login, logs in
// with the token once, browses with the session cookie and logs out.
func TestLogin(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *Deps) { d.AuthToken = "s3cret-token" })
	resp, body := b.get(t, "/csv_processing/status", "Accept", "text/html")
	wantStatus(t, resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/login?next=%2Fcsv_processing%2Fstatus" {
		t.Fatalf("Location = %q", loc)
	}
	// JSON clients still get a 401 with the bearer challenge.
	resp, body = b.get(t, "/csv_processing/status", "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusUnauthorized)
	resp, body = b.get(t, "/login?next=/csv_processing/status")
	wantStatus(t, resp, body, http.StatusOK)
	tok := csrfToken(t, body)
	resp, body = b.do(t, http.MethodPost, "/login", form("authenticity_token", tok, "token", "wrong", "next", "/csv_processing/status"),
		"Content-Type", "application/x-www-form-urlencoded")
	wantStatus(t, resp, body, http.StatusUnauthorized)
	resp, body = b.do(t, http.MethodPost, "/login", form("authenticity_token", tok, "token", "s3cret-token", "next", "//evil.example/"),
		"Content-Type", "application/x-www-form-urlencoded")
	wantStatus(t, resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/" {
		t.Errorf("off-site next: Location = %q, want /", loc)
	}
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			session = ck
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteLaxMode {
		t.Fatalf("session cookie = %+v", session)
	}
	resp, body = b.get(t, "/csv_processing/status", "Accept", "text/html")
	wantStatus(t, resp, body, http.StatusOK)
	if !strings.Contains(body, `id="logout"`) {
		t.Error("no logout button while logged in")
	}
	// A forged cookie does not pass.
	req, _ := http.NewRequest(http.MethodGet, b.ts.URL+"/csv_processing/status?format=json", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: "99999999999.deadbeef"})
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged session: %d", r.StatusCode)
	}
	resp, body = b.do(t, http.MethodPost, "/logout", form("authenticity_token", tok), "Content-Type", "application/x-www-form-urlencoded")
	wantStatus(t, resp, body, http.StatusSeeOther)
	resp, body = b.get(t, "/csv_processing/status", "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusUnauthorized)
}

// TestMetricsOwnListener: with its own listener /metrics leaves the app.
func TestMetricsOwnListener(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *Deps) { d.MetricsOnOwnListener = true })
	resp, body := b.get(t, "/metrics")
	wantStatus(t, resp, body, http.StatusNotFound)
	rec := newRecorder()
	b.srv.MetricsHandler().ServeHTTP(rec, mustRequest(t, "/metrics"))
	if rec.code != http.StatusOK || !strings.Contains(rec.body.String(), "pallarel_") {
		t.Errorf("metrics listener: %d %.200s", rec.code, rec.body.String())
	}
}

// TestStreamsShareOnePoll: many streams on one token share one poll, and
// streams are capped per client and in total (429).
func TestStreamsShareOnePoll(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *Deps) { d.StreamsPerClient, d.MaxEventStreams = 5, 6; d.EventInterval = time.Hour })
	token, _ := newRun(t, b, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func(header ...string) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.ts.URL+"/csv_processing/"+token+"/events", nil)
		req.Header.Set("Accept", "text/event-stream")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	var streams []*http.Response
	for range 5 {
		resp := open()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream: %d", resp.StatusCode)
		}
		// The first event arrives: the stream is registered.
		if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, resp)
	}
	if n, polls := b.srv.streams.open(); n != 5 || polls != 1 {
		t.Errorf("open streams %d, polls %d; want 5 and 1", n, polls)
	}
	// A forwarded header does not make a new client.
	resp := open("X-Forwarded-For", "203.0.113.9", "X-Real-IP", "203.0.113.9")
	if resp.StatusCode != http.StatusTooManyRequests {
		resp.Body.Close() // a stream: do not wait for its end
		t.Fatalf("sixth stream from one client: %d, want 429", resp.StatusCode)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantStatus(t, resp, string(body), http.StatusTooManyRequests)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	for _, s := range streams {
		s.Body.Close()
	}
	cancel()
	// All closed: the slots and the poll are released.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, polls := b.srv.streams.open()
		if n == 0 && polls == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after close: %d streams, %d polls", n, polls)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSlowUploadCut: an upload that trickles below the minimum rate is
// cut off with 408 instead of holding the connection.
func TestSlowUploadCut(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *Deps) { d.MinUploadRate, d.UploadRateWindow = 1<<20, time.Second })
	conn, err := net.Dial("tcp", strings.TrimPrefix(b.ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body, ctype := multipartBody(t, part{name: "csv_file", file: "a.csv", value: strings.Repeat("a,b\n", 1000)})
	fmt.Fprintf(conn, "POST /csv_processing HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", ctype, body.Len())
	done := make(chan struct{})
	go func() { // a byte at a time until the server gives up
		defer close(done)
		for _, c := range body.Bytes() {
			if _, err := conn.Write([]byte{c}); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(out), "too slow") {
		t.Fatalf("slow upload: %d %s", resp.StatusCode, out)
	}
	conn.Close()
	<-done
}

// TestIdempotencyKey: a retried submit with the same Idempotency-Key gets
// the first run back; another key makes a new run.
func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	submit := func(key string) (int, string) {
		body, ctype := multipartBody(t, part{name: "csv_file", file: "a.csv", value: sampleCSV})
		resp, out := b.do(t, http.MethodPost, "/csv_processing", body, "Content-Type", ctype, "Accept", "application/json", "Idempotency-Key", key)
		var res struct{ Token string }
		decode(t, out, &res)
		return resp.StatusCode, res.Token
	}
	c1, t1 := submit("order-42")
	c2, t2 := submit("order-42")
	c3, t3 := submit("order-43")
	if c1 != http.StatusCreated || c2 != http.StatusOK || t1 == "" || t1 != t2 {
		t.Errorf("same key: %d %s then %d %s; want 201 then 200 with the same token", c1, t1, c2, t2)
	}
	if c3 != http.StatusCreated || t3 == t1 {
		t.Errorf("other key: %d %s", c3, t3)
	}
	if n, _ := redis.Int(b.redis.Do(t, "LLEN", "queue:report"), nil); n != 2 {
		t.Errorf("%d runs enqueued, want 2", n)
	}
	// A failed request frees its key: the retry runs.
	body, ctype := multipartBody(t, part{name: "csv_file", file: "a.csv", value: ""})
	resp, out := b.do(t, http.MethodPost, "/csv_processing", body, "Content-Type", ctype, "Accept", "application/json", "Idempotency-Key", "order-44")
	wantStatus(t, resp, out, http.StatusUnprocessableEntity)
	if c, tok := submit("order-44"); c != http.StatusCreated || tok == "" {
		t.Errorf("retry after a failure: %d %q", c, tok)
	}
}

// TestBadInputAtTheDoor: an empty file, a NUL far past the sniffed head
// (nothing stored), and a type the workers cannot render are refused with
// a message in the client's language: English unless it asks for Japanese.
func TestBadInputAtTheDoor(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *Deps) { d.ReportTypes = []string{"xlsx", "text"} })
	ctx := context.Background()
	tests := []struct {
		name  string
		parts []part
		lang  string
		want  int
		msg   string
	}{
		{"empty", []part{{name: "csv_file", file: "a.csv", value: ""}}, "", 422, "The file is empty"},
		{"empty ja", []part{{name: "csv_file", file: "a.csv", value: ""}}, "ja", 422, "ファイルが空です"},
		{"NUL at 100 KB", []part{{name: "csv_file", file: "a.csv", value: strings.Repeat("a,b\n", 25000) + "x\x00y\n"}}, "", 415, "NUL at byte 100001"},
		{"pdf unavailable", []part{{name: "csv_type", value: "pdf"}, {name: "csv_file", file: "a.csv", value: sampleCSV}}, "", 422, "not available"},
		{"csv unknown", []part{{name: "csv_type", value: "csv"}, {name: "csv_file", file: "a.csv", value: sampleCSV}}, "", 422, "xlsx, pdf or text"},
		{"no file", []part{{name: "csv_type", value: "xlsx"}}, "", 400, "Choose a CSV file"},
		{"oversize template", []part{{name: "csv_file", file: "a.csv", value: sampleCSV},
			{name: "template", file: "t.xlsx", value: "PK\x03\x04" + strings.Repeat("x", int(MaxTemplateBytes))}}, "", 413, "template is too large"},
	}
	for _, tt := range tests {
		body, ctype := multipartBody(t, tt.parts...)
		resp, out := b.do(t, http.MethodPost, "/csv_processing", body, "Content-Type", ctype, "Accept", "application/json", "Accept-Language", tt.lang)
		if resp.StatusCode != tt.want || !strings.Contains(out, tt.msg) {
			t.Errorf("%s: %d %s; want %d with %q", tt.name, resp.StatusCode, out, tt.want, tt.msg)
		}
	}
	for _, prefix := range []string{"uploads/", "templates/"} {
		if infos, err := b.store.List(ctx, prefix); err != nil || len(infos) != 0 {
			t.Errorf("refused uploads left files: %v %v", infos, err)
		}
	}
}

// recorder is a minimal http.ResponseWriter for handlers served alone.
type recorder struct {
	h    http.Header
	code int
	body strings.Builder
}

func newRecorder() *recorder                    { return &recorder{h: http.Header{}, code: 200} }
func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }
func (r *recorder) WriteHeader(code int)        { r.code = code }

func mustRequest(t *testing.T, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
