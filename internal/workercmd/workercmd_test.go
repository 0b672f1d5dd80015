package workercmd

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/sidekiq"
)

// countingEnv is an environment that counts how often each variable is read.
type countingEnv struct {
	mu    sync.Mutex
	vars  map[string]string
	reads map[string]int
}

func (e *countingEnv) lookup(k string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.reads == nil {
		e.reads = map[string]int{}
	}
	e.reads[k]++
	v, ok := e.vars[k]
	return v, ok
}

var errStop = errors.New("setup stops here")

// A bad REDIS_URL is a configuration error (status 2) whose message names
// the variable but never the password in it.
func TestMainBadRedisURLHidesPassword(t *testing.T) {
	t.Parallel()
	for _, url := range []string{
		"redis://:supersecret@[::1",           // does not parse
		"http://user:supersecret@host:6379/0", // wrong scheme
		"redis://:supersecret@host:99999/0",   // bad port
	} {
		env := &countingEnv{vars: map[string]string{"REDIS_URL": url}}
		var stderr bytes.Buffer
		code := Main(context.Background(), "test", []string{"-q", "default"}, env.lookup, &stderr,
			func(context.Context, *Env) (func(), error) { t.Error("setup ran"); return nil, errStop })
		if code != 2 {
			t.Errorf("%s: exit %d, want 2", url, code)
		}
		if out := stderr.String(); !strings.Contains(out, "REDIS_URL") || strings.Contains(out, "supersecret") {
			t.Errorf("%s: stderr = %q, want REDIS_URL named and the password hidden", url, out)
		}
	}
}

// Main reads the environment once and hands Setup the result: REDIS_URL
// is read one time, the pool is on it, and --dialect overrides
// SIDEKIQ_DIALECT in the config the app is built from.
func TestMainReadsConfigOnce(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	env := &countingEnv{vars: map[string]string{"REDIS_URL": db.URL(), "SIDEKIQ_DIALECT": "8", "DATA_DIR": t.TempDir()}}
	var got *Env
	var stderr bytes.Buffer
	code := Main(context.Background(), "test", []string{"-q", "default", "--dialect", "7"}, env.lookup, &stderr,
		func(ctx context.Context, e *Env) (func(), error) {
			got = e
			c := e.Pool.Get()
			defer c.Close()
			_, err := c.Do("SET", "workercmd:test", "1")
			return nil, errors.Join(err, errStop)
		})
	if code != 1 || !strings.Contains(stderr.String(), errStop.Error()) {
		t.Fatalf("exit %d, stderr %q; want 1 and the setup's error", code, stderr.String())
	}
	if got == nil {
		t.Fatal("setup not called")
	}
	if got.Config.RedisURL != db.URL() {
		t.Errorf("Config.RedisURL = %q, want %q", got.Config.RedisURL, db.URL())
	}
	if got.Config.SidekiqDialect != 7 || got.Options.Dialect != sidekiq.Dialect7 {
		t.Errorf("dialect: config %d, options %d; want 7 from --dialect", got.Config.SidekiqDialect, got.Options.Dialect)
	}
	if n := env.reads["REDIS_URL"]; n != 1 {
		t.Errorf("REDIS_URL read %d times, want once", n)
	}
	if v := db.Do(t, "GET", "workercmd:test"); v == nil {
		t.Error("the pool is not on REDIS_URL's database")
	}
}
