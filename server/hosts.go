package server

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/gin-gonic/gin"
)

// hostPolicy is Rails' config.hosts for this server: which Host headers it
// answers. Without auth only loopback names and addresses (a page on
// another site that rebinds its own name to 127.0.0.1 sends its own name as
// Host, and is refused); with auth, the names ALLOWED_HOSTS lists, or any
// when it lists none (as Rails' empty config.hosts in production: the
// credentials are the guard). Health checks answer every Host: a load
// balancer calls them by address.
type hostPolicy struct {
	exact  map[string]bool
	suffix []string // ".example.com": example.com and its subdomains
	any    bool
}

func newHostPolicy(allowed []string, authOn bool) hostPolicy {
	p := hostPolicy{exact: map[string]bool{"localhost": true}, suffix: []string{".localhost"}}
	for _, h := range allowed {
		h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
		switch {
		case h == "":
		case strings.HasPrefix(h, "."):
			p.suffix = append(p.suffix, h)
		default:
			p.exact[strings.Trim(h, "[]")] = true
		}
	}
	p.any = authOn && len(allowed) == 0
	return p
}

// allows tells whether host (a Host header's name, without the port) is
// one this server answers.
func (p hostPolicy) allows(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if p.any || p.exact[host] {
		return true
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().IsLoopback()
	}
	for _, s := range p.suffix {
		if host == s[1:] || strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

// hostName is the name part of a Host header ("[::1]:8080" is "::1").
func hostName(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// healthPaths answer whatever the Host: load balancers probe by address.
var healthPaths = map[string]bool{"/up": true, "/healthz": true, "/readyz": true}

// checkHost refuses, with 403, a request whose Host this server does not
// answer (hostPolicy), before any handler or credential check runs.
func (s *Server) checkHost() gin.HandlerFunc {
	return func(c *gin.Context) {
		if healthPaths[c.Request.URL.Path] || s.hosts.allows(hostName(c.Request.Host)) {
			c.Next()
			return
		}
		s.log.Warn("request for a host this server does not answer refused", "host", c.Request.Host,
			"path", c.Request.URL.Path, "remote", c.ClientIP())
		s.fail(c, userErr(http.StatusForbidden, "err_blocked_host", c.Request.Host))
	}
}
