// Package secreturl keeps passwords in connection URLs (REDIS_URL,
// DATABASE_URL) out of logs and error messages, also for URLs that do not
// parse.
package secreturl

import (
	"cmp"
	"errors"
	"net/url"
	"strings"
)

// Redact shows raw with its password replaced by "xxxxx". A URL that does
// not parse is masked by hand: the text between "user:" and the last "@".
func Redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 {
		start = i + 3
	}
	at := strings.LastIndex(raw[start:], "@")
	if at < 0 {
		return raw
	}
	user, _, hasPassword := strings.Cut(raw[start:start+at], ":")
	if !hasPassword {
		return raw
	}
	return raw[:start] + user + ":xxxxx" + raw[start+at:]
}

// ParseError drops the URL (and its password) that url.Parse puts in its
// errors, keeping why it failed.
func ParseError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return cmp.Or(ue.Err, errors.New("invalid URL"))
	}
	return err
}
