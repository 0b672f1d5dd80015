package e2etest

import (
	"bufio"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// railsApp is the Rails app's job classes and steps (railsapp/app.rb), which
// every RubyDir holds under railsapp/ so interop and chaos tests share them.
//
//go:embed railsapp/*.rb
var railsApp embed.FS

// RailsAppDir is where a RubyDir holds railsapp/app.rb and cmd.rb:
// `sidekiq -r ./railsapp/app.rb`, `ruby ./railsapp/cmd.rb ...`.
const RailsAppDir = "railsapp"

var (
	rubyDirOnce sync.Once
	rubyDir     string
	rubyDirErr  error
)

// RubyDir is a fresh directory holding a copy of the calling package's
// testdata/, for running Ruby there (cmd.Dir): sidekiq-peers bind-mounts
// the working directory into its Sidekiq 7 chroot, and a mount left from an
// earlier run whose directory was since deleted (a re-cloned checkout)
// would hide the current files. A new path per test binary avoids that.
// The first call also bind-mounts it (one Ruby 7 call), so parallel tests
// never race that mount, and unmounts stale ones from earlier runs.
func RubyDir(tb testing.TB) string {
	tb.Helper()
	rubyDirOnce.Do(func() { rubyDir, rubyDirErr = makeRubyDir(SidekiqPeers(tb)) })
	if rubyDirErr != nil {
		tb.Fatal(rubyDirErr)
	}
	return rubyDir
}

func makeRubyDir(peers string) (string, error) {
	unmountStale()
	// Check first: running Ruby 7 before the chroot is installed leaves a
	// bind mount inside the half-made chroot that makes the install fail.
	if out, err := exec.Command(peers, "check").CombinedOutput(); err != nil {
		return "", fmt.Errorf("Ruby Sidekiq peers are not installed (run %s install): %w\n%s", peers, err, out)
	}
	dir, err := os.MkdirTemp("", "pallarel-ruby-")
	if err != nil {
		return "", err
	}
	dir, _ = filepath.EvalSymlinks(dir)
	err = filepath.WalkDir("testdata", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, p)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if errors.Is(err, fs.ErrNotExist) {
		err = nil // a package without testdata of its own
	}
	if err == nil {
		err = copyRailsApp(dir)
	}
	if err != nil {
		return "", fmt.Errorf("copy testdata for Ruby: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, peers, "ruby", "7", "-e", "0")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("sidekiq-peers ruby 7 (mounting %s): %w\n%s", dir, err, out)
	}
	return dir, nil
}

// unmountStale removes chroot bind mounts of earlier RubyDirs that are gone.
func unmountStale() {
	root := os.Getenv("SIDEKIQ7_ROOT")
	if root == "" {
		root = "/opt/sidekiq7"
	}
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return
	}
	defer f.Close()
	prefix := root + filepath.Join(os.TempDir(), "pallarel-ruby-")
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || !strings.HasPrefix(fields[1], prefix) {
			continue
		}
		if _, err := os.Stat(strings.TrimPrefix(fields[1], root)); os.IsNotExist(err) {
			_ = exec.Command("umount", "-l", fields[1]).Run()
		}
	}
}

func copyRailsApp(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, RailsAppDir), 0o755); err != nil {
		return err
	}
	entries, err := railsApp.ReadDir(RailsAppDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		b, err := railsApp.ReadFile(RailsAppDir + "/" + e.Name())
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, RailsAppDir, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
