package servercmd

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestBusyPortSaidFirst: with its port taken, the all-in-one server says
// so, naming PORT, before it starts anything (no embedded Redis, whose
// directory would appear under DATA_DIR).
func TestBusyPortSaidFirst(t *testing.T) {
	t.Parallel()
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := strconv.Itoa(held.Addr().(*net.TCPAddr).Port)
	dataDir := t.TempDir()
	vars := map[string]string{"DATA_DIR": dataDir, "PORT": port}
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), nil, func(k string) (string, bool) { v, ok := vars[k]; return v, ok }, &stdout, &stderr, nil)
	out := stderr.String()
	if code != 1 || !strings.Contains(out, "127.0.0.1:"+port) || !strings.Contains(out, "address already in use") || !strings.Contains(out, "set PORT") {
		t.Errorf("exit %d, stderr:\n%s", code, out)
	}
	if strings.Contains(out, "redis") {
		t.Errorf("the embedded Redis started before the port was checked:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "redis")); !os.IsNotExist(err) {
		t.Errorf("DATA_DIR/redis exists: %v", err)
	}
}
