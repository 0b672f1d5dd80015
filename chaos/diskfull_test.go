package chaos

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// smallDisk mounts a tmpfs of size (e.g. "64m") at a fresh directory and
// unmounts it when the test ends, after the processes stopped. It needs
// root (CI runs as root); without it the test fails loudly.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %s tmpfs (the case needs root): %v\n%s", size, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
	return dir
}

// fill writes to path until the file system is full; it returns the bytes written.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{'F'}, 64<<10)
	var n int64
	for {
		k, err := f.Write(chunk)
		n += int64(k)
		if errors.Is(err, syscall.ENOSPC) {
			return n
		}
		if err != nil {
			t.Fatalf("fill %s: %v", path, err)
		}
	}
}

// The disk of STORAGE_DIR (the row packs and the ZIP) fills up mid-run and
// stays full for a few seconds, then space is freed. The run ends (it never
// hangs): completed with every row once, or with rows failed for the full
// disk, never a row lost in silence; and no process dies.
func TestDiskFullMidRun(t *testing.T) {
	disk := smallDisk(t, "64m")
	c := newCluster(t, "STORAGE_DIR="+filepath.Join(disk, "storage"))
	c.worker("report", 2, "report", "default")
	n := sized(3000, 20000)
	u := c.upload(makeCSV("DF", n), "xlsx")
	tw := c.worker("token", 3, u.Queue)
	c.waitProgress(u.Token, n/10, n, 60*time.Second)
	filler := filepath.Join(disk, "filler")
	wrote := fill(t, filler)
	ended, _ := redis.Int(c.redisDo("GET", "pallarel:count:"+u.Token))
	t.Logf("disk full (%d MB of filler) with %d of %d rows ended", wrote>>20, ended, n)
	// Full until a write met it (XLSX row files need new pages) and 2 s
	// more. The worker logs failures in summaries: the reason is in the
	// retry set.
	retries := func() string {
		jobs, _ := redis.Strings(c.redisDo("ZRANGE", "retry", 0, -1))
		return strings.Join(jobs, "\n")
	}
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(retries(), "no space left on device"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no write met the full disk in 60 s: the fault did not land")
		}
	}
	time.Sleep(2 * time.Second)
	if st, _ := redis.Int(c.redisDo("GET", "pallarel:count:"+u.Token)); st >= n {
		t.Fatal("the run's rows all ended before space was freed: make it bigger")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	s := c.waitFinished(u.Token, 3*time.Minute)
	t.Logf("run ended %s after space was freed: %+v", time.Since(freed).Round(100*time.Millisecond), s)
	switch s.State {
	case "completed":
		r := c.verify(u.Token, "DF", n)
		if r.lost != 0 || r.duplicates != 0 || r.done+r.failed != n {
			t.Fatalf("rows lost %d, duplicated %d, in the ZIP %d of %d", r.lost, r.duplicates, r.done+r.failed, n)
		}
		for row, why := range r.failures {
			if !strings.Contains(why, "no space left") {
				t.Fatalf("row %d failed for another reason than the full disk: %q", row, why)
			}
		}
		if s.DoneCount != r.done || s.FailedCount != r.failed {
			t.Fatalf("status done %d failed %d, ZIP done %d failed %d", s.DoneCount, s.FailedCount, r.done, r.failed)
		}
	case "failed":
		if !strings.Contains(s.LastError, "no space left") {
			t.Fatalf("failed without the reason: %+v", s)
		}
	default:
		t.Fatalf("run: %+v", s)
	}
	t.Logf("%d rows ended with the disk full and back; the retry set named it", n)
	for name, p := range map[string]*proc{"server": c.procs["server"], "report": c.procs["report"], "token": tw} {
		select {
		case <-p.done:
			if name != "token" || p.err != nil {
				t.Errorf("%s exited: %v", name, p.err)
			}
		default:
		}
	}
}
