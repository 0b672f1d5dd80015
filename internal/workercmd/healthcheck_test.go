package workercmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pallarel/pallarel/internal/redistest"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// `worker -healthcheck` reads the age of the file the heartbeat rewrites:
// healthy while the loop beats, still healthy while Redis is down (the
// loop runs; replacing the task would not bring Redis back), unhealthy
// once the beats stop, and a usage error without the file setting.
func TestHealthcheckReadsTheHeartbeatFile(t *testing.T) {
	t.Parallel()
	own := redistest.NewOwn(t)
	beat := filepath.Join(t.TempDir(), "run", "worker-heartbeat")
	vars := map[string]string{"REDIS_URL": own.URL(0), "DATA_DIR": t.TempDir(), HeartbeatFileEnv: beat}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	check := func(now time.Time) (int, string) {
		var out bytes.Buffer
		return healthcheck(lookup, now, &out), out.String()
	}
	if code, out := check(time.Now()); code != 1 || !strings.Contains(out, "no heartbeat yet") {
		t.Fatalf("before the worker started: exit %d, %q; want 1", code, out)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- Main(ctx, "test", []string{"-q", "default", "-t", "1"}, lookup, &stderr, func(_ context.Context, e *Env) (func(), error) {
			e.Options.HeartbeatInterval = 50 * time.Millisecond
			return nil, nil
		})
	}()
	content := func() string { b, _ := os.ReadFile(beat); return string(b) }
	var first time.Time
	waitFor(t, "the first write", 30*time.Second, func() bool {
		fi, err := os.Stat(beat)
		if err == nil && first.IsZero() {
			first = fi.ModTime()
		}
		return err == nil
	})
	waitFor(t, "a beat after the start", 30*time.Second, func() bool {
		fi, err := os.Stat(beat)
		return err == nil && fi.ModTime().After(first) && strings.HasSuffix(content(), " ok\n")
	})
	if code, out := check(time.Now()); code != 0 {
		t.Fatalf("beating: exit %d, %q; want 0", code, out)
	}
	var out bytes.Buffer
	if code := Main(ctx, "test", []string{"-healthcheck"}, lookup, &out, nil); code != 0 {
		t.Fatalf("worker -healthcheck while beating: exit %d, %q", code, out.String())
	}

	own.Stop()
	waitFor(t, "a beat that failed to reach Redis", 30*time.Second, func() bool { return strings.Contains(content(), "redis error") })
	if code, out := check(time.Now()); code != 0 {
		t.Fatalf("Redis down, loop beating: exit %d, %q; want 0 (healthy)", code, out)
	}
	own.Start()

	cancel()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("worker did not stop; stderr:\n%s", stderr.String())
	}
	// No beats since the stop: a minute later the worker counts as wedged.
	if code, out := check(time.Now().Add(DefaultHealthcheckMaxAge + 5*time.Second)); code != 1 || !strings.Contains(out, "wedged") {
		t.Fatalf("a minute without beats: exit %d, %q; want 1", code, out)
	}
	vars[HealthcheckMaxAgeEnv] = "10m"
	if code, out := check(time.Now().Add(2 * time.Minute)); code != 0 {
		t.Fatalf("max age 10m, 2m old: exit %d, %q; want 0", code, out)
	}
	vars[HealthcheckMaxAgeEnv] = "soon"
	if code, _ := check(time.Now()); code != 2 {
		t.Fatalf("bad max age: exit %d, want 2", code)
	}
	delete(vars, HeartbeatFileEnv)
	if code, out := check(time.Now()); code != 2 || !strings.Contains(out, HeartbeatFileEnv) {
		t.Fatalf("no file set: exit %d, %q; want 2 naming %s", code, out, HeartbeatFileEnv)
	}
}
