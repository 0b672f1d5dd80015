// Package redistest gives each test its own database on a real redis-server.
//
// Sidekiq's key names are fixed ("queues", "retry", "processes"...), so tests
// cannot share a database or isolate themselves with a key prefix. The first
// call in a test binary starts a private redis-server on a free port with
// many databases; each test then takes one database, flushed, and gives it
// back in t.Cleanup. A missing redis-server fails the test loudly.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Databases is how many logical databases the private server has.
const Databases = 4096

// DB is one test's Redis database.
type DB struct {
	Addr string // host:port of the private server
	N    int    // database number
	Pool *redis.Pool
}

// URL is the redis:// URL of this database, as REDIS_URL takes it.
func (d *DB) URL() string { return fmt.Sprintf("redis://%s/%d", d.Addr, d.N) }

// Do runs one command on the database and fails the test on error.
func (d *DB) Do(tb testing.TB, cmd string, args ...any) any {
	tb.Helper()
	c := d.Pool.Get()
	defer c.Close()
	v, err := c.Do(cmd, args...)
	if err != nil {
		tb.Fatalf("redis %s %v: %v", cmd, args, err)
	}
	return v
}

type server struct {
	addr string
	cmd  *exec.Cmd
	mu   sync.Mutex
	free []int
	next int
}

var (
	once   sync.Once
	shared *server
	errSrv error
)

func start() (*server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found on PATH (install Debian's redis-server; .ci/run does): %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("find free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--databases", strconv.Itoa(Databases),
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"))
	// The server dies with the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			fmt.Fprintf(c, "PING\r\n")
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") {
				break
			}
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return nil, fmt.Errorf("redis-server on %s did not answer PING within 10s (log in %s)", addr, dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &server{addr: addr, cmd: cmd, next: 1}, nil
}

// Server returns the address of the private redis-server, starting it once.
func Server(tb testing.TB) string {
	tb.Helper()
	once.Do(func() { shared, errSrv = start() })
	if errSrv != nil {
		tb.Fatalf("redistest: %v", errSrv)
	}
	return shared.addr
}

// New gives the test its own empty database on the private redis-server.
func New(tb testing.TB) *DB {
	tb.Helper()
	addr := Server(tb)
	s := shared
	s.mu.Lock()
	var n int
	if len(s.free) > 0 {
		n = s.free[len(s.free)-1]
		s.free = s.free[:len(s.free)-1]
	} else {
		if s.next >= Databases {
			s.mu.Unlock()
			tb.Fatalf("redistest: all %d databases in use", Databases)
		}
		n = s.next
		s.next++
	}
	s.mu.Unlock()
	pool := NewPool(addr, n)
	db := &DB{Addr: addr, N: n, Pool: pool}
	db.Do(tb, "FLUSHDB")
	tb.Cleanup(func() {
		c := pool.Get()
		_, _ = c.Do("FLUSHDB")
		c.Close()
		pool.Close()
		s.mu.Lock()
		s.free = append(s.free, n)
		s.mu.Unlock()
	})
	return db
}

// NewPool is a redigo pool on database n of addr.
func NewPool(addr string, n int) *redis.Pool {
	return &redis.Pool{
		MaxIdle:     16,
		IdleTimeout: time.Minute,
		DialContext: func(ctx context.Context) (redis.Conn, error) {
			return redis.DialContext(ctx, "tcp", addr, redis.DialDatabase(n),
				redis.DialConnectTimeout(5*time.Second), redis.DialReadTimeout(10*time.Second),
				redis.DialWriteTimeout(5*time.Second))
		},
	}
}

// Own is a redis-server of one test's own, for tests that restart or
// stop Redis (fault tests). It is stopped in t.Cleanup.
type Own struct {
	Addr string
	dir  string
	port int
	cmd  *exec.Cmd
	tb   testing.TB
}

// NewOwn starts a private redis-server for this test only.
func NewOwn(tb testing.TB) *Own {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &Own{Addr: fmt.Sprintf("127.0.0.1:%d", port), dir: tb.TempDir(), port: port, tb: tb}
	s.Start()
	tb.Cleanup(s.Stop)
	return s
}

// URL is a redis:// URL for database n.
func (s *Own) URL(n int) string { return fmt.Sprintf("redis://%s/%d", s.Addr, n) }

// Start starts the server (again) on the same port.
func (s *Own) Start() {
	s.tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		s.tb.Fatalf("redis-server not found on PATH: %v", err)
	}
	s.cmd = exec.Command(bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log"))
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := redis.Dial("tcp", s.Addr)
		if err == nil {
			_, err = c.Do("PING")
			c.Close()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("redis-server on %s did not start", s.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server; its data is gone (it keeps nothing on disk).
func (s *Own) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}
