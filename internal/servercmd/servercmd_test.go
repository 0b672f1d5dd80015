package servercmd

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/pallarel/pallarel/internal/redistest"
)

// A server that cannot start (its database is unreachable) exits with
// status 1 and says why, without the password; a bad configuration exits
// with status 2 and masks the password too.
func TestRunStartFailureExits(t *testing.T) {
	t.Parallel()
	redisURL := redistest.New(t).URL()
	for _, tc := range []struct {
		name string
		vars map[string]string
		code int
		want string
	}{
		{"database unreachable", map[string]string{"REDIS_URL": redisURL, "DATABASE_URL": "mysql://root:hunter2@127.0.0.1:1/x?timeout=1s"}, 1, "server cannot start"},
		{"bad REDIS_URL", map[string]string{"REDIS_URL": "redis://:hunter2@[::1"}, 2, "REDIS_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vars := map[string]string{"DATA_DIR": t.TempDir(), "LAUNCHER": "none"}
			for k, v := range tc.vars {
				vars[k] = v
			}
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), []string{"-addr", "127.0.0.1:0"}, func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
				&stdout, &stderr, nil)
			out := stderr.String()
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, out)
			}
			if !strings.Contains(out, tc.want) || strings.Contains(out, "hunter2") || strings.Contains(out, "panic") {
				t.Errorf("stderr = %q, want %q named, no password, no panic", out, tc.want)
			}
		})
	}
}

// The welcome text shows the Redis URL for another worker without its
// password (with -workers, REDIS_URL is production's).
func TestWelcomeHidesRedisPassword(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	printWelcome(&out, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, "redis://:hunter2@redis.internal:6379/0", 8, false, true)
	if s := out.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, "redis.internal:6379/0") {
		t.Errorf("welcome text:\n%s", s)
	}
}

// The banner names the Ruby Web UI that reads what this server writes
// (the dialect's Sidekiq major version) and, for the default, the setting
// an older UI needs.
func TestWelcomeNamesRubyWebUIVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		dialect int
		want    []string
	}{
		{8, []string{"REDIS_URL=redis://127.0.0.1:6390/0 deploy/ruby-web/run --sidekiq 8 -p 9292", "a 6.x or 7.x Web UI misreads Sidekiq 8 data", "SIDEKIQ_DIALECT=6 or 7"}},
		{7, []string{"deploy/ruby-web/run --sidekiq 7 -p 9292", "a 6.x Web UI needs SIDEKIQ_DIALECT=6"}},
		{6, []string{"deploy/ruby-web/run --sidekiq 6 -p 9292", "(Sidekiq 6.x, as SIDEKIQ_DIALECT=6 writes)"}},
	} {
		var out bytes.Buffer
		printWelcome(&out, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, "redis://127.0.0.1:6390/0", tc.dialect, true, true)
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("dialect %d: welcome text lacks %q:\n%s", tc.dialect, w, out.String())
			}
		}
		if strings.Contains(out.String(), "rackup") {
			t.Errorf("dialect %d: welcome text still prints rackup (the host's Sidekiq, whatever its version):\n%s", tc.dialect, out.String())
		}
	}
}
