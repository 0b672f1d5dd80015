package interop

import (
	"context"
	"fmt"
	"net/http"
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
	"github.com/pallarel/pallarel/internal/servercmd"
	"github.com/pallarel/pallarel/sidekiq"
)

// TestRubyWebUIAsPrinted starts the server as `make run` does, takes the
// command its banner prints for Ruby's Web UI, runs it as printed (from
// the repository, only the port changed so tests can run side by side),
// and reads the queue latency of a job Go pushed from that UI's queues
// page: sane with the Sidekiq the banner names (8.0.6 for the default;
// 6.4.1 with SIDEKIQ_DIALECT=6, the setting the banner gives for a 6.x
// UI). The host's Sidekiq 6.4.1 on dialect-8 data (what the banner used to
// start) shows about -1.8e12 s: the control case checks the page parsing
// sees that.
func TestRubyWebUIAsPrinted(t *testing.T) {
	for _, tc := range []struct {
		name       string
		dialect    string
		override   string // replaces the printed --sidekiq N (the control)
		wantUI     string
		saneLatent bool
	}{
		{name: "default", dialect: "", wantUI: "8.0.6", saneLatent: true},
		{name: "dialect6", dialect: "6", wantUI: "6.4.1", saneLatent: true},
		{name: "sidekiq6-on-dialect8", dialect: "", override: "--sidekiq 6", wantUI: "6.4.1", saneLatent: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e2etest.RubyDir(t) // fails loudly when the Ruby peers are missing
			db := redistest.New(t)
			vars := map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": t.TempDir(), "LAUNCHER": "none", "SIDEKIQ_DIALECT": tc.dialect}
			ctx, stop := context.WithCancel(context.Background())
			out := &e2etest.Buffer{}
			ready := make(chan string, 1)
			exited := make(chan int, 1)
			go func() {
				exited <- servercmd.Run(ctx, []string{"-addr", "127.0.0.1:0", "-workers"},
					func(k string) (string, bool) { v, ok := vars[k]; return v, ok }, out, out, ready)
			}()
			t.Cleanup(func() { stop(); <-exited })
			select {
			case <-ready:
			case code := <-exited:
				t.Fatalf("server exited %d:\n%s", code, out.String())
			case <-time.After(60 * time.Second):
				t.Fatalf("server not ready:\n%s", out.String())
			}
			m := regexp.MustCompile(`Ruby's Web UI: +(.+)`).FindStringSubmatch(out.String())
			if m == nil {
				t.Fatalf("the banner prints no Ruby Web UI command:\n%s", out.String())
			}
			printed := strings.TrimSpace(m[1])
			port := freePort(t)
			line := strings.Replace(printed, "-p 9292", "-p "+strconv.Itoa(port), 1)
			if line == printed {
				t.Fatalf("printed command %q has no -p 9292", printed)
			}
			if tc.override != "" {
				line = regexp.MustCompile(`--sidekiq \d`).ReplaceAllString(line, tc.override)
			}
			t.Logf("printed: %s", printed)

			// A job Go pushed a few seconds ago, on a queue no worker serves.
			dialect := sidekiq.Dialect8
			if tc.dialect == "6" {
				dialect = sidekiq.Dialect6
			}
			job, err := sidekiq.NewJob("LatencyProbe", 1)
			if err != nil {
				t.Fatal(err)
			}
			job.Queue = "latency-probe"
			pushed := time.Now().Add(-5 * time.Second)
			if _, err := sidekiq.NewClient(db.Pool, sidekiq.ClientOptions{Dialect: dialect, Now: func() time.Time { return pushed }}).Push(context.Background(), job); err != nil {
				t.Fatal(err)
			}

			repo, _ := filepath.Abs("..")
			cmd := exec.Command("bash", "-c", line)
			cmd.Dir = repo
			cmd.Env = os.Environ()
			ui := startRubyWebUI(t, cmd)
			page := ui.waitPage(t, &http.Client{Timeout: 20 * time.Second}, fmt.Sprintf("http://127.0.0.1:%d/queues", port), 90*time.Second)
			if !strings.Contains(page, tc.wantUI) {
				t.Errorf("the queues page is not Sidekiq %s's:\n%.2000s\n%s", tc.wantUI, page, ui.log)
			}
			latency, err := queueLatency(page, "latency-probe")
			if err != nil {
				t.Fatalf("%v\n%.3000s", err, page)
			}
			t.Logf("Sidekiq %s shows a latency of %v s for Go's job", tc.wantUI, latency)
			if sane := latency >= 4 && latency < 600; sane != tc.saneLatent {
				t.Errorf("latency %v s of a job pushed 5 s ago; want sane=%v", latency, tc.saneLatent)
			}
			if !tc.saneLatent && latency > -1e9 {
				t.Errorf("latency %v s: the control case expects 6.4.1's misreading of Sidekiq 8 timestamps (about -1.8e12 s)", latency)
			}
		})
	}
}

// queueLatency reads the latency cell of queue's row in a Sidekiq Web UI
// queues page (6.x puts the number first, 8.x after an optional relative
// time in parentheses).
func queueLatency(page, queue string) (float64, error) {
	i := strings.Index(page, "queues/"+queue+`"`)
	if i < 0 {
		return 0, fmt.Errorf("queue %s not listed", queue)
	}
	row := page[i:]
	if j := strings.Index(row, "</tr>"); j >= 0 {
		row = row[:j]
	}
	cells := regexp.MustCompile(`(?s)<td[^>]*>(.*?)</td>`).FindAllStringSubmatch(row, -1)
	if len(cells) < 2 {
		return 0, fmt.Errorf("queue %s: row %q has no latency cell", queue, row)
	}
	cell := regexp.MustCompile(`(?s)<[^>]*>`).ReplaceAllString(cells[1][1], "")
	cell = regexp.MustCompile(`\([^)]*\)`).ReplaceAllString(cell, "")
	num := regexp.MustCompile(`-?[\d,]+(?:\.\d+)?`).FindString(cell)
	if num == "" {
		return 0, fmt.Errorf("queue %s: latency cell %q", queue, cells[1][1])
	}
	return strconv.ParseFloat(strings.ReplaceAll(num, ",", ""), 64)
}
