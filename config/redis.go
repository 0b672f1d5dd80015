package config

import (
	"fmt"
	"net"
	neturl "net/url"
	"strconv"
	"strings"

	"github.com/pallarel/pallarel/internal/secreturl"
)

// redisURL reads REDIS_URL as Sidekiq and as the Rails app both take it: a
// redis:// or rediss:// URL is used as it is; a bare host ("redis",
// "127.0.0.1:6379", "redis:6380"), which the app's config/redis.yml turns
// into "redis://<host>/<db>", becomes that URL with db from REDIS_DB
// (default 0, as redis.yml's db.sidekiq). So the .env that runs the app's
// Sidekiq runs the Go worker unchanged.
func (l *loader) redisURL() string {
	raw, ok := l.get("REDIS_URL")
	db := l.integer("REDIS_DB", 0, 0, 1<<20)
	if !ok {
		return ""
	}
	url, err := normalizeRedisURL(raw, int(db))
	if err != nil {
		l.fail("REDIS_URL", "%v", err)
		return ""
	}
	if _, set := l.get("REDIS_DB"); set && strings.Contains(raw, "://") {
		if u, _ := neturl.Parse(url); u != nil && strings.Trim(u.Path, "/") != "" && strings.Trim(u.Path, "/") != strconv.FormatInt(db, 10) {
			l.fail("REDIS_DB", "REDIS_URL %q names database %s; REDIS_DB %d applies only to a bare host", u.Redacted(), strings.Trim(u.Path, "/"), db)
		}
	}
	return url
}

// normalizeRedisURL turns a bare host[:port] into redis://host[:port]/db
// and checks a full URL without connecting.
func normalizeRedisURL(raw string, db int) (string, error) {
	if !strings.Contains(raw, "://") {
		if err := validBareRedisHost(raw); err != nil {
			return "", err
		}
		return fmt.Sprintf("redis://%s/%d", raw, db), nil
	}
	u, err := neturl.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("redis url %q: %w", secreturl.Redact(raw), secreturl.ParseError(err))
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return "", fmt.Errorf("redis url %q: scheme must be redis:// or rediss://", u.Redacted())
	}
	if u.Host == "" {
		return "", fmt.Errorf("redis url %q: no host", u.Redacted())
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("redis url %q: bad port %q", u.Redacted(), p)
		}
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 0 {
			return "", fmt.Errorf("redis url %q: database %q is not a number", u.Redacted(), p)
		}
	}
	return raw, nil
}

// validBareRedisHost checks "host" or "host:port" as redis.yml's host.
func validBareRedisHost(raw string) error {
	const want = "want a redis:// or rediss:// URL, or a host such as redis or 127.0.0.1:6379 (as the Rails app's config/redis.yml)"
	if strings.ContainsAny(raw, "/@?# \t") {
		return fmt.Errorf("%q: %s", secreturl.Redact(raw), want)
	}
	host, port := raw, ""
	if h, p, err := net.SplitHostPort(raw); err == nil {
		host, port = h, p
	} else if strings.Count(raw, ":") == 1 || strings.HasPrefix(raw, "[") {
		return fmt.Errorf("%q: %s", raw, want)
	}
	if host == "" {
		return fmt.Errorf("%q: no host; %s", raw, want)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: bad port %q", raw, port)
		}
	}
	if strings.Contains(host, ":") && !strings.HasPrefix(raw, "[") {
		return fmt.Errorf("%q: an IPv6 host needs brackets ([::1]:6379)", raw)
	}
	return nil
}
