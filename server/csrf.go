package server

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"

	"github.com/gin-gonic/gin"
)

// csrfCookie holds a random per-browser nonce; the forms carry
// HMAC(CSRFKey, nonce). A POST must bring both, matching: another site can
// make the browser send the cookie but cannot read it to forge the field.
const (
	csrfCookie = "pallarel_csrf"
	csrfField  = "authenticity_token" // Rails' name for it
	csrfHeader = "X-CSRF-Token"
	csrfCtxKey = "csrf_token"
)

// csrfIssue gives every browser the nonce cookie (once) and puts the
// matching form token in the context for the templates. The cookie covers
// the whole site: the upload form and the dashboard both use it.
func (s *Server) csrfIssue() gin.HandlerFunc {
	return func(c *gin.Context) {
		nonce := s.csrfNonce(c)
		if nonce == "" {
			b := make([]byte, 24)
			_, _ = rand.Read(b)
			nonce = base64.RawURLEncoding.EncodeToString(b)
			http.SetCookie(c.Writer, &http.Cookie{
				Name: csrfCookie, Value: nonce, Path: "/",
				HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.viaHTTPS(c.Request),
			})
		}
		c.Set(csrfCtxKey, s.csrfToken(nonce))
		c.Next()
	}
}

// csrf checks the token on every unsafe method (the dashboard's forms).
// It runs after csrfIssue and after the body limit.
func (s *Server) csrf() gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead {
			// Parse here so a body over the cap is a 413, not a silent
			// empty form (PostForm swallows the error).
			var err error
			if c.ContentType() == "multipart/form-data" {
				err = c.Request.ParseMultipartForm(s.d.MaxFormBytes)
			} else {
				err = c.Request.ParseForm()
			}
			if err != nil {
				s.fail(c, badBody(err))
				return
			}
			got := c.PostForm(csrfField)
			if got == "" {
				got = c.GetHeader(csrfHeader)
			}
			if !s.csrfValid(c, got) {
				s.fail(c, userErr(http.StatusForbidden, "err_csrf", ""))
				return
			}
		}
		c.Next()
	}
}

// csrfNonce is the browser's nonce cookie, or "" when it has none.
func (s *Server) csrfNonce(c *gin.Context) string {
	nonce, err := c.Cookie(csrfCookie)
	if err != nil || len(nonce) < 16 {
		return ""
	}
	return nonce
}

// csrfValid checks a submitted token against the browser's nonce cookie.
func (s *Server) csrfValid(c *gin.Context, token string) bool {
	nonce := s.csrfNonce(c)
	return nonce != "" && token != "" && hmac.Equal([]byte(token), []byte(s.csrfToken(nonce)))
}

func (s *Server) csrfToken(nonce string) string {
	m := hmac.New(sha256.New, s.d.CSRFKey)
	m.Write([]byte(nonce))
	return hex.EncodeToString(m.Sum(nil))
}
