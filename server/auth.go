package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
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

// sessionMAC signs a session's expiry. The key mixes in the configured
// credentials, so changing AUTH_TOKEN or the password ends every session.
func (s *Server) sessionMAC(expiry string) string {
	k := hmac.New(sha256.New, s.d.CSRFKey)
	k.Write([]byte("session\x00" + s.d.AuthToken + "\x00" + s.d.BasicUser + "\x00" + s.d.BasicPassword))
	m := hmac.New(sha256.New, k.Sum(nil))
	m.Write([]byte(expiry))
	return hex.EncodeToString(m.Sum(nil))
}

func (s *Server) validSession(c *gin.Context) bool {
	v, err := c.Cookie(sessionCookie)
	if err != nil {
		return false
	}
	exp, mac, ok := strings.Cut(v, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(s.sessionMAC(exp))) {
		return false
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	return err == nil && s.d.Now().Before(time.Unix(unix, 0))
}

func (s *Server) setSession(c *gin.Context, ttl time.Duration) {
	exp := strconv.FormatInt(s.d.Now().Add(ttl).Unix(), 10)
	maxAge := int(ttl.Seconds())
	if ttl <= 0 {
		maxAge = -1
	}
	http.SetCookie(c.Writer, &http.Cookie{
		Name: sessionCookie, Value: exp + "." + s.sessionMAC(exp), Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: c.Request.TLS != nil,
	})
}

type loginView struct {
	Next, Error  string
	Token, Basic bool // which fields to show
}

// safeNext keeps a post-login redirect on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
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
// constant time; a session cookie on success.
func (s *Server) login(c *gin.Context) {
	l := lang(c)
	if !s.authOn() {
		c.Redirect(http.StatusSeeOther, "/")
		return
	}
	ok := s.d.AuthToken != "" && equal(strings.TrimSpace(c.PostForm("token")), s.d.AuthToken)
	if !ok && s.d.BasicUser != "" {
		ok = equal(c.PostForm("user"), s.d.BasicUser) && equal(c.PostForm("password"), s.d.BasicPassword)
	}
	next := safeNext(c.PostForm("next"))
	if !ok {
		s.log.Warn("login refused", "remote", c.ClientIP())
		s.render(c, http.StatusUnauthorized, "login.html", pageData{Lang: l, Title: l.T("login"),
			Data: loginView{Next: next, Error: l.T("err_login"), Token: s.d.AuthToken != "", Basic: s.d.BasicUser != ""}})
		return
	}
	s.setSession(c, sessionTTL)
	c.Redirect(http.StatusSeeOther, next)
}

// logout is POST /logout.
func (s *Server) logout(c *gin.Context) {
	s.setSession(c, 0)
	c.Redirect(http.StatusSeeOther, "/login")
}
