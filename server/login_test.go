package server

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// login posts the token from client (an X-Forwarded-For address, believed
// since 127.0.0.1 is a trusted proxy) with next, and returns the answer.
func loginAs(t *testing.T, b *bundle, client, token, next string, header ...string) *http.Response {
	t.Helper()
	resp, body := b.get(t, "/login")
	wantStatus(t, resp, body, http.StatusOK)
	h := append([]string{"Content-Type", "application/x-www-form-urlencoded", "X-Forwarded-For", client}, header...)
	resp, _ = b.do(t, http.MethodPost, "/login", form("authenticity_token", csrfToken(t, body), "token", token, "next", next), h...)
	return resp
}

func trustLoopback(d *Deps) {
	d.AuthToken = "s3cret-token"
	d.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
}

// Guessing: 30 wrong tokens in a minute are answered 401; the 31st guess
// is slowed (429 with Retry-After), even with the right token, for that
// client only: the owner, elsewhere, logs in at once.
func TestLoginThrottledPerClient(t *testing.T) {
	t.Parallel()
	b := setup(t, trustLoopback)
	for i := 1; i <= loginFreeFailures; i++ {
		if resp := loginAs(t, b, "203.0.113.9", "guess", "/"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, resp.StatusCode)
		}
	}
	resp := loginAs(t, b, "203.0.113.9", "guess", "/")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("guess 31: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp := loginAs(t, b, "203.0.113.9", "s3cret-token", "/"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the right token from the locked client: %d, want 429", resp.StatusCode)
	}
	if resp := loginAs(t, b, "198.51.100.7", "s3cret-token", "/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the owner from another address: %d, want 303", resp.StatusCode)
	}
}

// The lockout is short and the global rate only slows: a backoff that
// doubles from 1 s to at most 5 min; a flood from many clients delays each
// attempt, refuses none.
func TestLoginLimiterBounds(t *testing.T) {
	t.Parallel()
	var l loginLimiter
	now := time.Now()
	for range loginFreeFailures + 40 {
		l.failed("a", now)
	}
	if wait, _ := l.admit("a", now); wait <= 0 || wait > loginMaxBackoff {
		t.Fatalf("lockout %s, want (0, %s]", wait, loginMaxBackoff)
	}
	if wait, _ := l.admit("a", now.Add(loginMaxBackoff)); wait != 0 {
		t.Fatalf("still locked %s after the longest backoff", wait)
	}
	var g loginLimiter
	for i := range loginGlobalFailures {
		g.failed(strings.Repeat("x", i%50+1), now)
	}
	wait, delay := g.admit("owner", now)
	if wait != 0 || delay != loginGlobalDelay {
		t.Fatalf("under a flood the owner gets wait %s delay %s; want no wait, %s delay", wait, delay, loginGlobalDelay)
	}
}

// next is read as a browser reads it: tabs, newlines and backslashes
// cannot smuggle another host past the check.
func TestLoginNextStaysOnSite(t *testing.T) {
	t.Parallel()
	for next, want := range map[string]string{
		"/\t/evil.example/x": "/", "/\n/evil.example": "/", "/\\evil.example": "/", "\\/evil.example": "/",
		"//evil.example": "/", "/\\/evil.example": "/", "https://evil.example/": "/", "javascript:alert(1)": "/",
		" //evil.example": "/", "/csv_processing/status?x=1": "/csv_processing/status?x=1", "/ok\t/path": "/ok/path",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
	b := setup(t, trustLoopback)
	resp := loginAs(t, b, "198.51.100.7", "s3cret-token", "/\t/evil.example/x")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/" {
		t.Fatalf("next=/<TAB>/evil.example/x: %d to %q, want 303 to /", resp.StatusCode, loc)
	}
}

func sessionOf(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	return nil
}

// Behind a TLS-terminating proxy TRUSTED_PROXIES lists, the session and
// CSRF cookies are Secure; X-Forwarded-Proto from anyone else is ignored.
func TestSessionCookieSecureBehindTrustedProxy(t *testing.T) {
	t.Parallel()
	b := setup(t, trustLoopback)
	resp, body := b.get(t, "/login", "X-Forwarded-Proto", "https")
	wantStatus(t, resp, body, http.StatusOK)
	secure := false
	for _, ck := range resp.Cookies() {
		secure = secure || (ck.Name == csrfCookie && ck.Secure)
	}
	if !secure {
		t.Errorf("behind the trusted proxy: cookies %v, want a Secure CSRF cookie", resp.Cookies())
	}
	if ck := sessionOf(loginAs(t, b, "198.51.100.7", "s3cret-token", "/", "X-Forwarded-Proto", "https")); ck == nil || !ck.Secure {
		t.Fatalf("behind the trusted proxy: cookie %+v, want Secure", ck)
	}
	b = setup(t, func(d *Deps) { d.AuthToken = "s3cret-token" }) // no trusted proxy
	if ck := sessionOf(loginAs(t, b, "198.51.100.7", "s3cret-token", "/", "X-Forwarded-Proto", "https")); ck == nil || ck.Secure {
		t.Fatalf("untrusted X-Forwarded-Proto: cookie %+v, want not Secure", ck)
	}
}

// Logout ends the session on the server: the cookie copied before it no
// longer passes; so does changing the token.
func TestLogoutRevokesSession(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *Deps) { d.AuthToken = "s3cret-token" })
	ck := sessionOf(loginAs(t, b, "", "s3cret-token", "/"))
	if ck == nil {
		t.Fatal("no session cookie")
	}
	replay := func() int {
		req, _ := http.NewRequest(http.MethodGet, b.ts.URL+"/csv_processing/status", nil)
		req.Header.Set("Accept", "application/json")
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: ck.Value})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := replay(); code != http.StatusOK {
		t.Fatalf("the session before logout: %d", code)
	}
	resp, body := b.get(t, "/login")
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = b.do(t, http.MethodPost, "/logout", form("authenticity_token", csrfToken(t, body)), "Content-Type", "application/x-www-form-urlencoded")
	wantStatus(t, resp, body, http.StatusSeeOther)
	if code := replay(); code != http.StatusUnauthorized {
		t.Fatalf("the copied cookie after logout: %d, want 401", code)
	}
	// A token change ends sessions too (the MAC key holds the credentials).
	ck = sessionOf(loginAs(t, b, "", "s3cret-token", "/"))
	b.srv.d.AuthToken = "new-token"
	if code := replay(); code != http.StatusUnauthorized {
		t.Fatalf("a session after the token changed: %d, want 401", code)
	}
}
