package interop

import (
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/pallarel/pallarel/internal/e2etest"
)

// rubyWebUI is a Ruby Web UI server started for a test.
type rubyWebUI struct {
	log    *e2etest.Buffer
	exited chan error
}

// startRubyWebUI starts cmd in its own process group, its output logged,
// and stops the group (TERM, then KILL after 15 s) when the test ends.
func startRubyWebUI(t *testing.T, cmd *exec.Cmd) *rubyWebUI {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	ui := &rubyWebUI{log: &e2etest.Buffer{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = ui.log, ui.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd, err)
	}
	go func() { ui.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-ui.exited:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-ui.exited
		}
	})
	return ui
}

// waitPage GETs u until it answers 200 and returns the body; the test
// fails when the server exits first or after d.
func (ui *rubyWebUI) waitPage(t *testing.T, c *http.Client, u string, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		status, body, err := get(c, u)
		if err == nil && status == 200 {
			return body
		}
		select {
		case err := <-ui.exited:
			t.Fatalf("the Web UI exited: %v\n%s", err, ui.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %v\n%s", u, status, err, ui.log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func get(c *http.Client, u string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	res, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
