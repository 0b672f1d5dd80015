package interop

import (
	"fmt"
	"html"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/sidekiq"
)

// TestRubyWebConfigRu serves deploy/ruby-web/config.ru, the command the
// server prints for Ruby's own Web UI, with each Sidekiq version as a real
// HTTP server (rackup on Rack 2 for 6.4.1, puma on Rack 3 for 7.3.2 and
// 8.0.6), beside a Go server: the Busy page lists the Go process, and its
// Quiet button (a CSRF-checked POST, so the session works) quiets it.
func TestRubyWebConfigRu(t *testing.T) {
	for _, tc := range []struct {
		version string
		dialect sidekiq.Dialect
	}{{"6", sidekiq.Dialect6}, {"7", sidekiq.Dialect7}, {"8", sidekiq.Dialect8}} {
		t.Run("sidekiq"+tc.version, func(t *testing.T) {
			t.Parallel()
			db := redistest.New(t)
			srv, _ := startServer(t, db, sidekiq.NewRegistry(), sidekiq.Options{Dialect: tc.dialect, Tag: "ruby-web"})

			src, err := os.ReadFile(filepath.Join("..", "deploy", "ruby-web", "config.ru"))
			if err != nil {
				t.Fatal(err)
			}
			dir := e2etest.RubyDir(t)
			ru := filepath.Join(dir, "config-"+tc.version+"-"+strconv.Itoa(db.N)+".ru")
			if err := os.WriteFile(ru, src, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(ru) })
			port := freePort(t)
			var cmd *exec.Cmd
			if tc.version == "6" {
				cmd = exec.Command("rackup", "-o", "127.0.0.1", "-p", strconv.Itoa(port), filepath.Base(ru))
			} else {
				cmd = exec.Command(e2etest.SidekiqPeers(t), "ruby", tc.version, "-S", "puma",
					"-b", fmt.Sprintf("tcp://127.0.0.1:%d", port), filepath.Base(ru))
			}
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "REDIS_URL="+db.URL())
			ui := startRubyWebUI(t, cmd)

			jar, _ := cookiejar.New(nil)
			client := &http.Client{Jar: jar, Timeout: 20 * time.Second,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			base := fmt.Sprintf("http://127.0.0.1:%d", port)
			busy := ui.waitPage(t, client, base+"/busy", 60*time.Second)
			if !strings.Contains(busy, srv.Identity()) {
				t.Fatalf("/busy does not list the Go process %s", srv.Identity())
			}
			token := regexp.MustCompile(`name=['"]authenticity_token['"] value=['"]([^'"]+)['"]`).FindStringSubmatch(busy)
			if token == nil {
				t.Fatalf("/busy has no authenticity_token")
			}
			form := url.Values{"authenticity_token": {html.UnescapeString(token[1])}, "identity": {srv.Identity()}, "quiet": {"1"}}
			res, err := client.PostForm(base+"/busy", form)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 302 {
				t.Fatalf("POST /busy quiet: %d, want 302 (the session keeps the CSRF token)\n%s", res.StatusCode, ui.log)
			}
			waitFor(t, 10*time.Second, "Quiet from Ruby's Web UI reaches the Go server", func() bool {
				return redisString(t, db, "HGET", srv.Identity(), "quiet") == "true"
			})
		})
	}
}
