package server

import (
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// authOn reports whether any credential is configured.
func (s *Server) authOn() bool {
	return s.d.AuthToken != "" || s.d.BasicUser != ""
}

// requireAuth lets a request through when auth is off, or when it carries
// the configured bearer token or basic credentials.
func (s *Server) requireAuth() gin.HandlerFunc {
	return func(c *gin.Context) {
		if !s.authOn() || s.authorized(c.Request) {
			c.Next()
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
