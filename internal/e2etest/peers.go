package e2etest

import (
	"os"
	"path/filepath"
	"testing"
)

// SidekiqPeers is the path of the sidekiq-peers tool that runs real Ruby
// Sidekiq 6.4.1 and 7.3.2: $SIDEKIQ_PEERS, else shared/tools/sidekiq-peers
// beside the repository (where CI and the development machines keep it).
// A missing tool fails the test.
func SidekiqPeers(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("SIDEKIQ_PEERS"); p != "" {
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("sidekiq-peers: no go.mod above the test's directory")
		}
		dir = parent
	}
	p := filepath.Join(filepath.Dir(dir), "shared", "tools", "sidekiq-peers")
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("sidekiq-peers not found at %s (set SIDEKIQ_PEERS): %v", p, err)
	}
	return p
}
