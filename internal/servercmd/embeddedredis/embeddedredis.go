// Package embeddedredis runs the all-in-one server's Redis: a real
// redis-server child process with an append-only file in the data
// directory when one is installed, or miniredis in this process when not.
//
// A redis-server child is durable and fast: every write goes to
// appendonlydir/ (appendfsync everysec), a new server on the same directory
// loads it back, and its lists are real lists (miniredis's are slices, so a
// big queue slows it down quadratically). The child dies with its parent
// (Pdeathsig SIGTERM, on which redis-server fsyncs the AOF and exits), has
// its own process group so a terminal's Ctrl-C reaches only the parent
// (which stops its workers first, then the child), and is stopped with
// SHUTDOWN, then SIGKILL after a grace period. A lock file keeps two servers
// off one directory; a redis-server left behind by a previous server of
// that directory (its pid file names a live redis-server working there) is
// stopped before a new one starts.
//
// miniredis, the fallback, is kept in a snapshot file in the same directory
// (written every 2 s when it changed, and at Close; read back at start), and
// its TTLs are made to run on the wall clock. It stays the second choice: a
// kill loses up to the last interval, and its lists are slices.
package embeddedredis

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gomodule/redigo/redis"
)

// Kinds of embedded server.
const (
	KindRedisServer = "redis-server"
	KindMiniredis   = "miniredis"
)

// Config says where and how to run the embedded Redis.
type Config struct {
	// Dir holds the append-only file, the pid file, the log and the lock.
	// Required for redis-server.
	Dir string
	// Addr is the host:port to listen on. Port 0 picks a free port; a busy
	// port also falls back to a free one, with a warning. Defaults to
	// 127.0.0.1:6390.
	Addr string
	// Binary is the redis-server to run. Empty looks it up in PATH;
	// KindMiniredis runs miniredis in memory instead.
	Binary string
	// Grace is how long SHUTDOWN may take before SIGKILL, and how long a
	// left-behind redis-server may take to exit. Defaults to 10 s.
	Grace time.Duration
	// StartTimeout bounds the start (loading a big AOF included). Defaults to 5 min.
	StartTimeout time.Duration
	// SnapshotEvery is how often miniredis is written to Dir when it
	// changed. Defaults to 2 s.
	SnapshotEvery time.Duration
	Log           *slog.Logger
}

// Server is a running embedded Redis.
type Server struct {
	// URL is the redis:// URL of database 0.
	URL string
	// Addr is the host:port it listens on.
	Addr string
	// Kind is KindRedisServer or KindMiniredis.
	Kind string
	// Pid is the redis-server's process id (0 for miniredis).
	Pid int

	cfg    Config
	log    *slog.Logger
	cmd    *exec.Cmd
	exited chan struct{} // closed when the child has been reaped
	lock   *os.File

	mini     *miniredis.Miniredis
	stopMini context.CancelFunc
	miniDone chan struct{}
}

// Start starts the embedded Redis and returns once it answers PING.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg.Addr = cmp.Or(cfg.Addr, "127.0.0.1:6390")
	cfg.Grace = cmp.Or(cfg.Grace, 10*time.Second)
	cfg.StartTimeout = cmp.Or(cfg.StartTimeout, 5*time.Minute)
	cfg.SnapshotEvery = cmp.Or(cfg.SnapshotEvery, 2*time.Second)
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log}
	bin := cfg.Binary
	if bin != KindMiniredis {
		if bin == "" {
			if p, err := exec.LookPath("redis-server"); err == nil {
				bin = p
			}
		}
		if bin != "" {
			if err := s.startChild(ctx, bin); err != nil {
				return nil, err
			}
			return s, nil
		}
	}
	if err := s.startMiniredis(); err != nil {
		return nil, err
	}
	return s, nil
}

func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return "127.0.0.1"
	}
	return host
}

// startChild locks the directory, stops a redis-server a previous server
// left behind, and starts the child on a usable port.
func (s *Server) startChild(ctx context.Context, bin string) error {
	if s.cfg.Dir == "" {
		return errors.New("embedded redis: no directory")
	}
	dir, err := filepath.Abs(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("embedded redis: %w", err)
	}
	s.cfg.Dir = dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("embedded redis: %w", err)
	}
	if s.lock, err = lockDir(dir); err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			s.lock.Close()
		}
	}()
	if err := stopLeftover(dir, s.cfg.Grace, s.log); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	host := hostOf(s.cfg.Addr)
	_, port, _ := net.SplitHostPort(s.cfg.Addr)
	if port != "0" && !portFree(s.cfg.Addr) {
		s.log.Warn("embedded redis: address busy, using a free port", "addr", s.cfg.Addr)
		port = "0"
	}
	for attempt := 1; ; attempt++ {
		addr := net.JoinHostPort(host, port)
		if port == "0" {
			if addr, err = freePort(host); err != nil {
				return fmt.Errorf("embedded redis: %w", err)
			}
		}
		err := s.run(ctx, bin, addr)
		if err == nil {
			break
		}
		// Another process may take a free port between our probe and
		// redis-server's bind: try another one.
		if errors.Is(err, errAddrInUse) && attempt < 5 {
			s.log.Warn("embedded redis: port taken, trying another", "addr", addr)
			port = "0"
			continue
		}
		return err
	}
	ok = true
	s.log.Info("embedded redis-server started (all-in-one mode)", "redis_url", s.URL, "pid", s.Pid,
		"dir", dir, "persistence", "appendonly everysec")
	return nil
}

var errAddrInUse = errors.New("address already in use")

// run starts redis-server on addr and waits until it answers PING.
func (s *Server) run(ctx context.Context, bin, addr string) error {
	host, port, _ := net.SplitHostPort(addr)
	dir := s.cfg.Dir
	logPath := filepath.Join(dir, "redis.log")
	args := []string{
		"--bind", host, "--port", port, "--protected-mode", "yes",
		"--dir", dir, "--pidfile", filepath.Join(dir, "redis.pid"), "--logfile", logPath,
		"--daemonize", "no", "--supervised", "no",
		// Durability: every write is appended and fsynced each second;
		// SHUTDOWN and SIGTERM fsync what is left. No RDB snapshots: the
		// AOF (with its RDB preamble after each rewrite) is the one copy,
		// and a fork to snapshot the job queue would double its memory.
		"--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
	}
	start, err := startLocked(bin, args)
	if err != nil {
		return fmt.Errorf("embedded redis: start %s: %w", bin, err)
	}
	s.cmd, s.exited, s.Pid = start.cmd, start.exited, start.cmd.Process.Pid
	s.Addr, s.Kind = addr, KindRedisServer
	s.URL = "redis://" + addr + "/0"
	if err := waitReady(ctx, addr, s.Pid, s.exited); err != nil {
		s.kill()
		tailLog := tailFile(logPath, 1500)
		if strings.Contains(tailLog, "Address already in use") && !errors.Is(err, errAddrInUse) {
			err = fmt.Errorf("%w: %w", errAddrInUse, err)
		}
		return fmt.Errorf("embedded redis-server on %s: %w\n%s", addr, err, tailLog)
	}
	return nil
}

type started struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// startLocked starts the child from a goroutine locked to its OS thread,
// which stays locked until the child exits: Pdeathsig fires when the thread
// that forked the child ends, not the process (go.dev/issue/27505), and the
// Go runtime may end an idle thread.
func startLocked(bin string, args []string) (started, error) {
	res := make(chan error, 1)
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	exited := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		// Unlocked once the child is gone: a goroutine that ends locked
		// ends its thread too, and so would kill any other Pdeathsig
		// child that thread once forked.
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			res <- err
			return
		}
		res <- nil
		_ = cmd.Wait()
		close(exited)
	}()
	if err := <-res; err != nil {
		return started{}, err
	}
	return started{cmd: cmd, exited: exited}, nil
}

// waitReady waits until addr answers PING with PONG (not LOADING) and,
// when pid is set, is the redis-server with that pid.
func waitReady(ctx context.Context, addr string, pid int, exited <-chan struct{}) error {
	var last error
	for {
		select {
		case <-exited:
			return fmt.Errorf("exited while starting (last: %v)", last)
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
		c, err := redis.Dial("tcp", addr, redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(5*time.Second))
		if err != nil {
			last = err
			continue
		}
		_, err = c.Do("PING")
		var info string
		if err == nil && pid > 0 {
			info, err = redis.String(c.Do("INFO", "server"))
		}
		c.Close()
		if err != nil {
			last = err // LOADING while the AOF is read back
			continue
		}
		// Another Redis may have taken the port after our probe: only
		// our own child will do.
		if pid > 0 && !strings.Contains(info, "process_id:"+strconv.Itoa(pid)+"\r\n") {
			return fmt.Errorf("%s answers, but it is not our redis-server %d: %w", addr, pid, errAddrInUse)
		}
		return nil
	}
}

// Close stops the embedded Redis: SHUTDOWN (which fsyncs the AOF), then
// SIGKILL if it has not exited within the grace period.
func (s *Server) Close() error {
	if s.mini != nil {
		s.stopMini()
		<-s.miniDone
		var err error
		if s.cfg.Dir != "" {
			if err = s.snapshot(); err != nil {
				err = fmt.Errorf("embedded redis: final snapshot: %w", err)
			}
		}
		s.mini.Close()
		s.mini = nil
		s.lock.Close()
		return err
	}
	if s.cmd == nil {
		return nil
	}
	defer func() {
		s.lock.Close()
		s.cmd = nil
	}()
	var err error
	if c, derr := redis.Dial("tcp", s.Addr, redis.DialConnectTimeout(2*time.Second), redis.DialReadTimeout(s.cfg.Grace)); derr == nil {
		_, err = c.Do("SHUTDOWN")
		c.Close()
		if err != nil && isConnClosed(err) {
			err = nil // SHUTDOWN answers by closing the connection
		}
	} else {
		err = derr
	}
	if err != nil {
		s.log.Warn("embedded redis: SHUTDOWN failed, sending SIGTERM", "err", err)
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-s.exited:
		s.log.Info("embedded redis-server stopped", "pid", s.Pid)
		return nil
	case <-time.After(s.cfg.Grace):
	}
	s.log.Error("embedded redis: did not stop in time, killing it", "pid", s.Pid, "grace", s.cfg.Grace)
	s.kill()
	return fmt.Errorf("embedded redis-server %d: killed after %v", s.Pid, s.cfg.Grace)
}

// isConnClosed tells SHUTDOWN's success (the server closes the
// connection) from its refusal (an error reply).
func isConnClosed(err error) bool {
	var reply redis.Error
	return !errors.As(err, &reply)
}

func (s *Server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// lockDir takes an exclusive lock on dir's lock file for as long as the
// returned file is open. The kernel drops it when the process dies, so a
// killed server never leaves a stale lock.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded redis: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(f.Name())
		f.Close()
		return nil, fmt.Errorf("embedded redis: %s is used by another server (pid %s): %w", dir, bytes.TrimSpace(holder), err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// stopLeftover stops the redis-server a previous server of dir left behind
// (killed before it could stop its child, or a child that has not finished
// exiting yet). Its pid file must name a live redis-server whose working
// directory is dir: a stale pid file, or a pid reused by another process,
// is ignored.
func stopLeftover(dir string, grace time.Duration, log *slog.Logger) error {
	pidFile := filepath.Join(dir, "redis.pid")
	b, err := os.ReadFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("embedded redis: %w", err)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil || pid <= 0 || !isRedisIn(pid, dir) {
		log.Info("embedded redis: removing a stale pid file", "pid_file", pidFile, "content", string(bytes.TrimSpace(b)))
		_ = os.Remove(pidFile)
		return nil
	}
	log.Warn("embedded redis: a redis-server of this data directory is still running; stopping it", "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM) // fsyncs the AOF, then exits
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	log.Error("embedded redis: left-over redis-server did not stop, killing it", "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for range 100 {
		if !alive(pid) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("embedded redis: left-over redis-server %d in %s does not die", pid, dir)
}

// isRedisIn reports whether pid is a live redis-server working in dir.
func isRedisIn(pid int, dir string) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte("redis-server")) {
		return false
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return false
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real // the kernel shows the resolved path
	}
	return cwd == dir && alive(pid)
}

// alive reports whether pid runs (a zombie does not: it only waits to be
// reaped by a parent that may be gone).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

func portFree(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func freePort(host string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
