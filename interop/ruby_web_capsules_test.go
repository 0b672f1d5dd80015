package interop

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/e2etest"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/internal/servercmd"
)

// TestRubyWebUIShowsInProcessWorkersOnce: the server's in-process workers
// (the report worker and the webhook worker, each a sidekiq.Server of one OS
// process) are capsules of one Sidekiq process: Ruby 8.0.6's Busy page
// lists the process once with every worker's queues, Ruby's ProcessSet
// reads one process with the summed concurrency, and the page's Quiet and
// Stop buttons act on every worker of it. Before capsules, each worker
// wrote an entry of its own, each with the process's RSS.
func TestRubyWebUIShowsInProcessWorkersOnce(t *testing.T) {
	t.Parallel()
	dir := e2etest.RubyDir(t) // fails loudly when the Ruby peers are missing
	db := redistest.New(t)
	vars := map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": t.TempDir(), "LAUNCHER": "none"}
	ctx, stop := context.WithCancel(context.Background())
	out := &e2etest.Buffer{}
	ready := make(chan string, 1)
	exited := make(chan int, 1)
	go func() {
		exited <- servercmd.Run(ctx, []string{"-addr", "127.0.0.1:0", "-workers"},
			func(k string) (string, bool) { v, ok := vars[k]; return v, ok }, out, out, ready)
	}()
	t.Cleanup(func() {
		stop()
		<-exited
		if t.Failed() {
			t.Logf("server log:\n%s", out)
		}
	})
	select {
	case <-ready:
	case code := <-exited:
		t.Fatalf("server exited %d:\n%s", code, out.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("server not ready:\n%s", out.String())
	}
	members := func() []string {
		m, _ := redis.Strings(db.Do(t, "SMEMBERS", "processes"), nil)
		return m
	}
	waitFor(t, 10*time.Second, "the server's process entry", func() bool { return len(members()) > 0 })
	ps := members()
	if len(ps) != 1 {
		t.Fatalf("processes %q: the in-process workers of one server are %d entries, want one", ps, len(ps))
	}
	id := ps[0]
	if !strings.Contains(id, ":"+strconv.Itoa(os.Getpid())+":") {
		t.Fatalf("entry %s is not this process's", id)
	}

	// Ruby's API: one process, every worker's queues, the sum of their
	// concurrency (report 10, webhook 5).
	var api struct {
		Processes []map[string]any `json:"processes"`
	}
	rubyResult(t, "8", "testdata/api.rb", &api, "REDIS_URL="+db.URL())
	if len(api.Processes) != 1 {
		t.Fatalf("Sidekiq::ProcessSet lists %d processes: %v", len(api.Processes), api.Processes)
	}
	p := api.Processes[0]
	if p["identity"] != id || p["concurrency"] != 15.0 || !reflect.DeepEqual(p["queues"], []any{"report", "default", "webhook"}) {
		t.Errorf("Sidekiq::ProcessSet reads %v", p)
	}

	src, err := os.ReadFile(filepath.Join("..", "deploy", "ruby-web", "config.ru"))
	if err != nil {
		t.Fatal(err)
	}
	ru := filepath.Join(dir, "config-capsules-"+strconv.Itoa(db.N)+".ru")
	if err := os.WriteFile(ru, src, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(ru) })
	port := freePort(t)
	cmd := exec.Command(e2etest.SidekiqPeers(t), "ruby", "8", "-S", "puma", "-b", fmt.Sprintf("tcp://127.0.0.1:%d", port), filepath.Base(ru))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "REDIS_URL="+db.URL())
	ui := startRubyWebUI(t, cmd)
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	busy := ui.waitPage(t, client, base+"/busy", 90*time.Second)
	if !strings.Contains(busy, "8.0.6") {
		t.Fatalf("/busy is not Sidekiq 8.0.6's:\n%.2000s", busy)
	}
	shown := map[string]bool{}
	for _, m := range regexp.MustCompile(`name=['"]identity['"] value=['"]([^'"]+)['"]`).FindAllStringSubmatch(busy, -1) {
		shown[html.UnescapeString(m[1])] = true
	}
	if len(shown) != 1 || !shown[id] {
		t.Fatalf("/busy lists processes %v, want %s once\n%.4000s", shown, id, busy)
	}
	for _, q := range []string{"report", "default", "webhook"} {
		if !strings.Contains(busy, q) {
			t.Errorf("/busy does not show queue %s of the process", q)
		}
	}

	post := func(action string) {
		t.Helper()
		page := ui.waitPage(t, client, base+"/busy", 30*time.Second)
		token := regexp.MustCompile(`name=['"]authenticity_token['"] value=['"]([^'"]+)['"]`).FindStringSubmatch(page)
		if token == nil {
			t.Fatalf("/busy has no authenticity_token")
		}
		res, err := client.PostForm(base+"/busy", url.Values{"authenticity_token": {html.UnescapeString(token[1])}, "identity": {id}, action: {"1"}})
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 302 {
			t.Fatalf("POST /busy %s: %d, want 302\n%s", action, res.StatusCode, ui.log)
		}
	}
	post("quiet")
	waitFor(t, 15*time.Second, "Quiet from Ruby's Web UI quiets the process", func() bool {
		return redisString(t, db, "HGET", id, "quiet") == "true"
	})
	if !strings.Contains(out.String(), `quieting: no new jobs will be fetched`) || strings.Count(out.String(), "quieting: no new jobs") < 2 {
		t.Errorf("Quiet did not reach both workers:\n%s", out.String())
	}
	post("stop")
	waitFor(t, 40*time.Second, "Stop from Ruby's Web UI stops every worker of the process", func() bool {
		return len(members()) == 0 && strings.Count(out.String(), "msg=stopped") >= 2
	})
}
