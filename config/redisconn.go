package config

import (
	"net"
	neturl "net/url"
	"strings"

	"github.com/pallarel/pallarel/internal/redisurl"
)

// redisURLVariable is the variable that holds the Redis URL, as Sidekiq
// finds it (redis_connection.rb determine_redis_provider): the one
// REDIS_PROVIDER names (Heroku add-ons' MY_REDIS_URL...) when it is set,
// else REDIS_URL.
func (l *loader) redisURLVariable() string {
	p, ok := l.get("REDIS_PROVIDER")
	if !ok {
		return "REDIS_URL"
	}
	if strings.Contains(p, ":") {
		l.fail("REDIS_PROVIDER", "should be the name of the variable that holds the Redis URL, not a URL itself (as Sidekiq requires)")
		return "REDIS_URL"
	}
	if _, set := l.get(p); set {
		return p
	}
	return "REDIS_URL"
}

// redisSettings reads the Sentinel and TLS settings, and returns the URL
// to dial with them (with Sentinel and no REDIS_URL, redis://<master>/0).
//
//   - REDIS_SENTINELS: host:port,host:port (port 26379 when left out), as
//     redis-client's `sentinels:`; REDIS_SENTINEL_MASTER: the master's name
//     (default: the REDIS_URL host, as redis-client's `url:
//     "redis://mymaster"`); REDIS_SENTINEL_USERNAME, REDIS_SENTINEL_PASSWORD.
//   - REDIS_TLS_CA_FILE, REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE,
//     REDIS_TLS_SERVER_NAME, REDIS_TLS_VERIFY (peer or none), as
//     redis-client's ssl_params ca_file, cert, key, verify_hostname and
//     verify_mode; they need a rediss:// URL.
func (l *loader) redisSettings(url string) (string, redisurl.Settings) {
	var s redisurl.Settings
	for _, a := range l.list("REDIS_SENTINELS") {
		if _, _, err := net.SplitHostPort(a); err != nil {
			a = net.JoinHostPort(a, "26379")
		}
		s.Sentinels = append(s.Sentinels, a)
	}
	if len(s.Sentinels) > 0 {
		s.SentinelMaster = l.str("REDIS_SENTINEL_MASTER", "")
		if s.SentinelMaster == "" && url != "" {
			if u, err := neturl.Parse(url); err == nil {
				s.SentinelMaster = u.Hostname()
			}
		}
		if s.SentinelMaster == "" {
			l.fail("REDIS_SENTINEL_MASTER", "required with REDIS_SENTINELS (or give the master's name as the REDIS_URL host)")
		}
		s.SentinelUsername = l.str("REDIS_SENTINEL_USERNAME", "")
		s.SentinelPassword = l.str("REDIS_SENTINEL_PASSWORD", "")
		if url == "" && s.SentinelMaster != "" {
			url = "redis://" + s.SentinelMaster + "/0"
		}
	}
	s.TLS = redisurl.TLS{
		CAFile:     l.str("REDIS_TLS_CA_FILE", ""),
		CertFile:   l.str("REDIS_TLS_CERT_FILE", ""),
		KeyFile:    l.str("REDIS_TLS_KEY_FILE", ""),
		ServerName: l.str("REDIS_TLS_SERVER_NAME", ""),
		Verify:     l.str("REDIS_TLS_VERIFY", ""),
	}
	if url != "" || !s.TLS.IsZero() {
		if err := s.Validate(url); err != nil {
			l.fail("REDIS_TLS_*/REDIS_SENTINEL*", "%v", err)
		}
	}
	return url, s
}
