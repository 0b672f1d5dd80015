// Package redisurl checks a Redis URL without connecting (sidekiq's
// ValidRedisURL), in a package of its own so that a settings package can
// check one without importing the protocol package. It imports
// internal/secreturl and the standard library only.
package redisurl

import (
	"fmt"
	neturl "net/url"
	"strconv"
	"strings"

	"github.com/pallarel/pallarel/internal/secreturl"
)

// Valid checks a Redis URL without connecting: redis:// or rediss://, a
// host, a port in range and a numeric database. Its errors mask the
// password.
func Valid(raw string) error {
	u, err := neturl.Parse(raw)
	if err != nil {
		return fmt.Errorf("redis url %q: %w", secreturl.Redact(raw), secreturl.ParseError(err))
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return fmt.Errorf("redis url %q: scheme must be redis:// or rediss://", u.Redacted())
	}
	if u.Host == "" {
		return fmt.Errorf("redis url %q: no host", u.Redacted())
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("redis url %q: bad port %q", u.Redacted(), p)
		}
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 0 {
			return fmt.Errorf("redis url %q: database %q is not a number", u.Redacted(), p)
		}
	}
	return nil
}
