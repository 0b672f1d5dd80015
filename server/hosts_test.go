package server

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// DNS rebinding: a page on evil.example rebinds its name to 127.0.0.1, so
// the browser sends Host: evil.example (and Origin: http://evil.example) to
// the no-auth server on loopback. It gets 403 for every page and write;
// loopback names and addresses are served, health checks whatever the Host.
func TestRebindingHostRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	u, _ := url.Parse(b.ts.URL)
	port := u.Port()
	for _, path := range []string{"/", "/csv_processing/status", "/sidekiq", "/sidekiq/queues"} {
		resp, body := b.get(t, path, "Host", "evil.example:"+port)
		wantStatus(t, resp, body, http.StatusForbidden)
	}
	resp, body := b.do(t, http.MethodPost, "/csv_processing", strings.NewReader("x"), "Host", "evil.example:"+port,
		"Origin", "http://evil.example:"+port, "Content-Type", "multipart/form-data; boundary=x")
	wantStatus(t, resp, body, http.StatusForbidden)
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "app.localhost:" + port, "[::1]:" + port, "127.0.0.2:" + port} {
		resp, body := b.get(t, "/", "Host", host)
		wantStatus(t, resp, body, http.StatusOK)
	}
	for _, path := range []string{"/up", "/healthz"} {
		resp, body := b.get(t, path, "Host", "10.0.3.7")
		wantStatus(t, resp, body, http.StatusOK)
	}
	// ALLOWED_HOSTS names more, Rails-like: exact names and ".domain".
	b = setup(t, func(d *Deps) { d.AllowedHosts = []string{"reports.example.com", ".corp.example"} })
	for host, want := range map[string]int{
		"reports.example.com": http.StatusOK, "a.b.corp.example": http.StatusOK, "corp.example": http.StatusOK,
		"example.com": http.StatusForbidden, "evilcorp.example": http.StatusForbidden, "reports.example.com.evil.example": http.StatusForbidden,
	} {
		resp, body := b.get(t, "/", "Host", host)
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d, want %d: %.200s", host, resp.StatusCode, want, body)
		}
	}
}

// With auth and ALLOWED_HOSTS, another Host is refused before the
// credentials are looked at; the same-origin check compares Origin with
// an allowed host, not with whatever Host the request carried.
func TestHostCheckWithAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *Deps) { d.AuthToken = "tok"; d.AllowedHosts = []string{"reports.example.com"} })
	resp, body := b.get(t, "/", "Host", "evil.example", "Authorization", "Bearer tok")
	wantStatus(t, resp, body, http.StatusForbidden)
	resp, body = b.get(t, "/", "Host", "reports.example.com", "Authorization", "Bearer tok")
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = b.get(t, "/readyz", "Host", "10.0.3.7")
	if resp.StatusCode == http.StatusForbidden {
		t.Fatalf("/readyz by address refused: %s", body)
	}
	// Auth without ALLOWED_HOSTS answers any Host (Rails' empty
	// config.hosts), but an Origin must still be a host it answers.
	b = setup(t, func(d *Deps) { d.AuthToken = "tok" })
	resp, body = b.get(t, "/", "Host", "anything.example", "Authorization", "Bearer tok")
	wantStatus(t, resp, body, http.StatusOK)
}

func TestHostPolicy(t *testing.T) {
	t.Parallel()
	p := newHostPolicy(nil, false)
	for h, want := range map[string]bool{
		"localhost": true, "LOCALHOST.": true, "x.localhost": true, "127.0.0.1": true, "127.9.9.9": true, "::1": true,
		"[::1]": true, "::ffff:127.0.0.1": true, "0.0.0.0": false, "10.0.0.1": false, "evil.example": false,
		"localhost.evil.example": false, "": false,
	} {
		if got := p.allows(h); got != want {
			t.Errorf("allows(%q) = %v, want %v", h, got, want)
		}
	}
}
