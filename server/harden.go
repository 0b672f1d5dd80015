package server

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"
)

// DefaultMaxFormBytes caps the body of every request but an upload when
// Deps.MaxFormBytes is zero: the dashboard's forms are a few hundred bytes.
const DefaultMaxFormBytes int64 = 1 << 20

const nonceCtxKey = "csp_nonce"

// securityHeaders sets the headers every answer carries: a
// Content-Security-Policy that allows only this origin's resources and the
// page's own nonce-tagged scripts, and refuses framing (clickjacking);
// nosniff, so a stored upload or error text is never run as script; and a
// Referrer-Policy that keeps run tokens (they are in every URL) out of
// other sites' logs.
func (s *Server) securityHeaders() gin.HandlerFunc {
	return func(c *gin.Context) {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		nonce := base64.RawStdEncoding.EncodeToString(b)
		c.Set(nonceCtxKey, nonce)
		h := c.Writer.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+nonce+"'; style-src 'self' 'unsafe-inline'; "+
			"img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		c.Next()
	}
}

// addNonce tags the page's own <script> elements with the request's CSP
// nonce. Only the templates can write a literal "<script>": html/template
// escapes "<" in every value it inserts.
func addNonce(page []byte, nonce string) []byte {
	if nonce == "" {
		return page
	}
	return bytes.ReplaceAll(page, []byte("<script>"), []byte(`<script nonce="`+nonce+`">`))
}

// limitBody caps every request body at n bytes, before any handler or
// middleware reads it (the dashboard's CSRF check parses the form), except
// the upload route, which has its own, larger cap. A declared length over
// the cap is refused before reading.
func (s *Server) limitBody(n int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.Method == http.MethodPost && c.FullPath() == "/csv_processing" {
			c.Next()
			return
		}
		if c.Request.ContentLength > n {
			c.Header("Connection", "close") // do not read the rest
			s.fail(c, &http.MaxBytesError{Limit: n})
			return
		}
		if c.Request.Body != nil {
			c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, n)
		}
		c.Next()
	}
}

// sameOrigin refuses an unsafe request that a browser marks as coming from
// another site: Sec-Fetch-Site other than same-origin or none (typed by
// the user), or an Origin whose host is not this one. Clients that send
// neither (the CLI, curl, Rails) are not browsers and pass; their
// credentials are not sent by a third party's page.
func (s *Server) sameOrigin() gin.HandlerFunc {
	return func(c *gin.Context) {
		switch c.Request.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			c.Next()
			return
		}
		if s.crossSite(c.Request) {
			s.log.Warn("cross-site request refused", "method", c.Request.Method, "path", c.Request.URL.Path,
				"origin", c.GetHeader("Origin"), "sec_fetch_site", c.GetHeader("Sec-Fetch-Site"))
			s.fail(c, userErr(http.StatusForbidden, "err_cross_site", ""))
			return
		}
		c.Next()
	}
}

func (s *Server) crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return true // "null" (sandboxed frames, file:) and garbage
	}
	return !s.sameSite(u, r)
}

// sameSite tells whether origin names this very server as the browser
// reached it: the Host it was sent to, and a host the server answers
// (a rebinding page's Origin equals the Host it sent, and that name is not
// allowed).
func (s *Server) sameSite(origin *url.URL, r *http.Request) bool {
	return strings.EqualFold(origin.Host, r.Host) && s.hosts.allows(origin.Hostname())
}

// browserRequest reports whether r came from a browser, which may send
// credentials on its own (cookies, cached basic auth) and so must prove it
// came from our own form with a CSRF token. Browsers mark every POST with
// Origin, and current ones with Sec-Fetch-Site; a client that sends neither
// (the CLI, curl, a Rails job, a scripted session with a cookie jar) is not
// a page another site controls.
func browserRequest(r *http.Request) bool {
	return r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != ""
}
