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
	csrfCtxKey = "csrf_token"
)

// csrf issues the nonce cookie on every request that lacks it and checks
// the token on every unsafe method.
func (s *Server) csrf() gin.HandlerFunc {
	return func(c *gin.Context) {
		nonce, err := c.Cookie(csrfCookie)
		if err != nil || len(nonce) < 16 {
			nonce = ""
		}
		if c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead {
			got := c.PostForm(csrfField)
			if got == "" {
				got = c.GetHeader("X-CSRF-Token")
			}
			if nonce == "" || !hmac.Equal([]byte(got), []byte(s.csrfToken(nonce))) {
				s.fail(c, userErr(http.StatusForbidden, "err_csrf", ""))
				return
			}
		}
		if nonce == "" {
			b := make([]byte, 24)
			_, _ = rand.Read(b)
			nonce = base64.RawURLEncoding.EncodeToString(b)
			http.SetCookie(c.Writer, &http.Cookie{
				Name: csrfCookie, Value: nonce, Path: "/sidekiq",
				HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.Request.TLS != nil,
			})
		}
		c.Set(csrfCtxKey, s.csrfToken(nonce))
		c.Next()
	}
}

func (s *Server) csrfToken(nonce string) string {
	m := hmac.New(sha256.New, s.d.CSRFKey)
	m.Write([]byte(nonce))
	return hex.EncodeToString(m.Sum(nil))
}
