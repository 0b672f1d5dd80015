package server

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
)

// Browser sessions: with AUTH_TOKEN alone a browser has no way to send a
// bearer token, so /login takes the token (or the basic credentials) once
// and sets a signed, HttpOnly session cookie.
const (
	sessionCookie = "pallarel_session"
	sessionCtxKey = "session"
	sessionTTL    = 12 * time.Hour
)

// authOn reports whether any credential is configured.
func (s *Server) authOn() bool {
	return s.d.AuthToken != "" || s.d.BasicUser != ""
}

// requireAuth lets a request through when auth is off, or when it carries
// the configured bearer token, basic credentials or a valid session
// cookie. A browser without credentials is sent to /login when a token is
// configured (basic auth alone makes the browser prompt instead).
func (s *Server) requireAuth() gin.HandlerFunc {
	return func(c *gin.Context) {
		if !s.authOn() {
			c.Next()
			return
		}
		if s.validSession(c) {
			c.Set(sessionCtxKey, true)
			c.Next()
			return
		}
		if s.authorized(c.Request) {
			c.Next()
			return
		}
		if s.d.AuthToken != "" && s.d.BasicUser == "" && c.Request.Method == http.MethodGet && !wantsJSON(c) &&
			!strings.Contains(c.GetHeader("Accept"), "text/event-stream") {
			c.Redirect(http.StatusSeeOther, "/login?next="+url.QueryEscape(c.Request.URL.RequestURI()))
			c.Abort()
			return
		}
		s.fail(c, userErr(http.StatusUnauthorized, "err_unauthorized", ""))
	}
}

func (s *Server) authorized(r *http.Request) bool {
	if s.d.AuthToken != "" {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && equal(strings.TrimSpace(tok), s.d.AuthToken) {
			return true
		}
	}
	if s.d.BasicUser != "" {
		if u, p, ok := r.BasicAuth(); ok && equal(u, s.d.BasicUser) && equal(p, s.d.BasicPassword) {
			return true
		}
	}
	return false
}

// challenge sets WWW-Authenticate for a 401: basic when configured, so a
// browser prompts, and bearer when a token is configured.
func (s *Server) challenge(c *gin.Context) {
	if s.d.BasicUser != "" {
		c.Writer.Header().Add("WWW-Authenticate", `Basic realm="pallarel", charset="UTF-8"`)
	}
	if s.d.AuthToken != "" {
		c.Writer.Header().Add("WWW-Authenticate", `Bearer realm="pallarel"`)
	}
}

// equal compares secrets in constant time.
func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// sessionMAC signs a session's id and expiry. The key mixes in the
// configured credentials, so changing AUTH_TOKEN or the password ends
// every session.
func (s *Server) sessionMAC(value string) string {
	k := hmac.New(sha256.New, s.d.CSRFKey)
	k.Write([]byte("session\x00" + s.d.AuthToken + "\x00" + s.d.BasicUser + "\x00" + s.d.BasicPassword))
	m := hmac.New(sha256.New, k.Sum(nil))
	m.Write([]byte(value))
	return hex.EncodeToString(m.Sum(nil))
}

// sessionKey is the Redis key that keeps a session alive: logout deletes
// it, so a copied cookie dies with the session. It holds a hash of the id,
// not the id.
func sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return contract.SessionKey(hex.EncodeToString(sum[:16]))
}

// parseSession checks the cookie's signature and expiry and returns the
// session id ("<id>.<expiry>.<mac>").
func (s *Server) parseSession(c *gin.Context) (string, bool) {
	v, err := c.Cookie(sessionCookie)
	if err != nil {
		return "", false
	}
	i := strings.LastIndexByte(v, '.')
	if i < 0 || !hmac.Equal([]byte(v[i+1:]), []byte(s.sessionMAC(v[:i]))) {
		return "", false
	}
	id, exp, ok := strings.Cut(v[:i], ".")
	if !ok || id == "" {
		return "", false
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || !s.d.Now().Before(time.Unix(unix, 0)) {
		return "", false
	}
	return id, true
}

// validSession is a signed, unexpired cookie whose session Redis still
// holds (not logged out). Redis unreachable: no session (fail closed).
func (s *Server) validSession(c *gin.Context) bool {
	id, ok := s.parseSession(c)
	if !ok {
		return false
	}
	conn, err := s.d.Pool.GetContext(c.Request.Context())
	if err != nil {
		return false
	}
	defer conn.Close()
	n, err := redis.Int(conn.Do("EXISTS", sessionKey(id)))
	return err == nil && n == 1
}

// startSession stores a new session in Redis and sets its cookie.
func (s *Server) startSession(c *gin.Context) error {
	var raw [18]byte
	_, _ = rand.Read(raw[:])
	id := base64.RawURLEncoding.EncodeToString(raw[:])
	conn, err := s.d.Pool.GetContext(c.Request.Context())
	if err != nil {
		return fmt.Errorf("start session: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Do("SET", sessionKey(id), "1", "EX", int(sessionTTL.Seconds())); err != nil {
		return fmt.Errorf("start session: %w", err)
	}
	value := id + "." + strconv.FormatInt(s.d.Now().Add(sessionTTL).Unix(), 10)
	s.setCookie(c, value+"."+s.sessionMAC(value), int(sessionTTL.Seconds()))
	return nil
}

// endSession forgets the request's session in Redis and clears its cookie.
func (s *Server) endSession(c *gin.Context) {
	if id, ok := s.parseSession(c); ok {
		if conn, err := s.d.Pool.GetContext(c.Request.Context()); err == nil {
			if _, err := conn.Do("DEL", sessionKey(id)); err != nil {
				s.log.Warn("logout: forget the session", "err", err)
			}
			conn.Close()
		}
	}
	s.setCookie(c, "", -1)
}

func (s *Server) setCookie(c *gin.Context, value string, maxAge int) {
	http.SetCookie(c.Writer, &http.Cookie{
		Name: sessionCookie, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.viaHTTPS(c.Request),
	})
}

// viaHTTPS tells whether the browser reached us over https: TLS here, or
// X-Forwarded-Proto: https from a proxy TRUSTED_PROXIES lists (anyone
// else could send the header).
func (s *Server) viaHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if !s.fromTrustedProxy(r) {
		return false
	}
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	return strings.EqualFold(strings.TrimSpace(proto), "https")
}

func (s *Server) fromTrustedProxy(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range s.d.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

type loginView struct {
	Next, Error  string
	Token, Basic bool // which fields to show
}

// safeNext keeps a post-login redirect on this site. It reads next as a
// browser would before deciding: tabs and newlines are dropped, and a
// backslash is a slash, so "/\t/evil.example", "/\\evil.example" and
// "\\/evil.example" are all "//evil.example" (another host) and give "/".
func safeNext(next string) string {
	norm := strings.Map(func(r rune) rune {
		switch r {
		case '\t', '\n', '\r':
			return -1
		case '\\':
			return '/'
		}
		return r
	}, strings.TrimLeft(next, "\x00\x20"))
	if !strings.HasPrefix(norm, "/") || strings.HasPrefix(norm, "//") {
		return "/"
	}
	u, err := url.Parse(norm)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return norm
}

// loginForm is GET /login.
func (s *Server) loginForm(c *gin.Context) {
	l := lang(c)
	if !s.authOn() {
		c.Redirect(http.StatusSeeOther, "/")
		return
	}
	s.render(c, http.StatusOK, "login.html", pageData{Lang: l, Title: l.T("login"),
		Data: loginView{Next: safeNext(c.Query("next")), Token: s.d.AuthToken != "", Basic: s.d.BasicUser != ""}})
}

// login is POST /login: the token or the user and password, checked in
// constant time; a session on success. Attempts are throttled per client
// and in total (login_limit.go).
func (s *Server) login(c *gin.Context) {
	l := lang(c)
	if !s.authOn() {
		c.Redirect(http.StatusSeeOther, "/")
		return
	}
	client := c.ClientIP()
	wait, delay := s.logins.admit(client, s.d.Now())
	if delay > 0 {
		select { // many clients failing: every attempt waits
		case <-time.After(delay):
		case <-c.Request.Context().Done():
			return
		}
	}
	if wait > 0 {
		s.log.Warn("login throttled", "remote", client, "retry_after", wait.Round(time.Second))
		c.Header("Retry-After", strconv.Itoa(int(wait.Seconds()+0.999)))
		s.render(c, http.StatusTooManyRequests, "login.html", pageData{Lang: l, Title: l.T("login"),
			Data: loginView{Next: safeNext(c.PostForm("next")), Error: l.T("err_login_throttled"), Token: s.d.AuthToken != "", Basic: s.d.BasicUser != ""}})
		return
	}
	ok := s.d.AuthToken != "" && equal(strings.TrimSpace(c.PostForm("token")), s.d.AuthToken)
	if !ok && s.d.BasicUser != "" {
		ok = equal(c.PostForm("user"), s.d.BasicUser) && equal(c.PostForm("password"), s.d.BasicPassword)
	}
	next := safeNext(c.PostForm("next"))
	if !ok {
		s.logins.failed(client, s.d.Now())
		s.log.Warn("login refused", "remote", client)
		s.render(c, http.StatusUnauthorized, "login.html", pageData{Lang: l, Title: l.T("login"),
			Data: loginView{Next: next, Error: l.T("err_login"), Token: s.d.AuthToken != "", Basic: s.d.BasicUser != ""}})
		return
	}
	s.logins.succeeded(client)
	if err := s.startSession(c); err != nil {
		s.fail(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, next)
}

// logout is POST /logout: the session ends on the server, not only in
// this browser.
func (s *Server) logout(c *gin.Context) {
	s.endSession(c)
	c.Redirect(http.StatusSeeOther, "/login")
}
