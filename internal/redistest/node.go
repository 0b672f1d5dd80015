package redistest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Node is a redis-server of one test's own, started with extra arguments
// (replication, min-replicas, TLS, load delays), for failover tests. It is
// stopped in t.Cleanup.
type Node struct {
	Addr string
	Port int
	Dir  string
	cmd  *exec.Cmd
	tb   testing.TB
	// dial reaches the node for Do; a TLS node needs its options.
	dialOpts []redis.DialOption
}

// NewNode starts a redis-server on a free port with args added to its
// command line, and waits until it answers (an error reply such as
// LOADING or MASTERDOWN counts as up).
func NewNode(tb testing.TB, args ...string) *Node {
	tb.Helper()
	n := &Node{Port: FreePort(tb), Dir: tb.TempDir(), tb: tb}
	n.Addr = fmt.Sprintf("127.0.0.1:%d", n.Port)
	n.start("--port", strconv.Itoa(n.Port), args...)
	return n
}

// NewTLSNode starts a redis-server that listens only with TLS, using the
// certificates in f; authClients is redis' tls-auth-clients (yes, no,
// optional).
func NewTLSNode(tb testing.TB, f TLSFiles, authClients string) *Node {
	tb.Helper()
	n := &Node{Port: FreePort(tb), Dir: tb.TempDir(), tb: tb}
	n.Addr = fmt.Sprintf("127.0.0.1:%d", n.Port)
	cert, err := f.ClientTLS()
	if err != nil {
		tb.Fatal(err)
	}
	n.dialOpts = []redis.DialOption{redis.DialUseTLS(true), redis.DialTLSConfig(cert)}
	n.start("--port", "0", "--tls-port", strconv.Itoa(n.Port),
		"--tls-cert-file", f.ServerCert, "--tls-key-file", f.ServerKey,
		"--tls-ca-cert-file", f.CA, "--tls-auth-clients", authClients)
	return n
}

func (n *Node) start(portFlag, port string, args ...string) {
	n.tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		n.tb.Fatalf("redis-server not found on PATH (install Debian's redis-server; .ci/run does): %v", err)
	}
	full := append([]string{portFlag, port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", n.Dir, "--logfile", filepath.Join(n.Dir, "redis.log")}, args...)
	n.cmd = exec.Command(bin, full...)
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		n.tb.Fatalf("start redis-server: %v", err)
	}
	n.tb.Cleanup(n.Stop)
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := n.Try("PING")
		var re redis.Error
		if err == nil || errors.As(err, &re) { // any reply: LOADING, MASTERDOWN...
			return
		}
		if time.Now().After(deadline) {
			n.tb.Fatalf("redis-server on %s did not start: %v\n%s", n.Addr, err, n.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Restart stops the server and starts it again on the same port and
// directory (so with the data set it saved) with args.
func (n *Node) Restart(args ...string) {
	n.tb.Helper()
	n.Stop()
	n.start("--port", strconv.Itoa(n.Port), args...)
}

// Try sends one command on a connection of its own.
func (n *Node) Try(cmd string, args ...any) (any, error) {
	opts := append([]redis.DialOption{redis.DialConnectTimeout(2 * time.Second), redis.DialReadTimeout(10 * time.Second)}, n.dialOpts...)
	c, err := redis.Dial("tcp", n.Addr, opts...)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Do(cmd, args...)
}

// Do is Try that fails the test on error.
func (n *Node) Do(cmd string, args ...any) any {
	n.tb.Helper()
	v, err := n.Try(cmd, args...)
	if err != nil {
		n.tb.Fatalf("redis %s %s %v: %v", n.Addr, cmd, args, err)
	}
	return v
}

// Info is one field of INFO (for example "role", "master_repl_offset",
// "errorstat_READONLY"), or "" when absent.
func (n *Node) Info(field string) string {
	n.tb.Helper()
	v, err := n.TryInfo(field)
	if err != nil {
		n.tb.Fatalf("INFO on %s: %v", n.Addr, err)
	}
	return v
}

// TryInfo is Info with its error: a server changing role (a Sentinel
// demoting it) drops its clients, the asking one too.
func (n *Node) TryInfo(field string) (string, error) {
	s, err := redis.String(n.Try("INFO", "everything"))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(s, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			return v, nil
		}
	}
	return "", nil
}

// Log is the server's log file.
func (n *Node) Log() string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "redis.log"))
	return string(b)
}

// Stop kills the server.
func (n *Node) Stop() {
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Kill()
		_ = n.cmd.Wait()
		n.cmd = nil
	}
}

// FreePort is a TCP port on 127.0.0.1 free at the time of the call.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Proxy forwards TCP connections to a target that can be switched, as a
// managed Redis's primary endpoint (a DNS name) moves to the promoted node
// in a failover: connections already open stay on the old node, new ones
// reach the new target.
type Proxy struct {
	Addr   string
	ln     net.Listener
	target atomic.Value // string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	dialed map[string]int // backend connections made, by target
}

// NewProxy listens on a free port and forwards to target until the test
// ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), ln: ln, dialed: map[string]int{}}
	p.target.Store(target)
	p.wg.Add(1)
	go p.serve()
	tb.Cleanup(p.Close)
	return p
}

// SetTarget sends new connections to addr.
func (p *Proxy) SetTarget(addr string) { p.target.Store(addr) }

// Dialed is how many connections the proxy has forwarded to addr. A
// client's connect returns before the proxy accepts it, so a test that
// means to keep a connection on the old target waits for this before it
// switches.
func (p *Proxy) Dialed(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dialed[addr]
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		target := p.target.Load().(string)
		d := net.Dialer{Timeout: 2 * time.Second}
		out, err := d.DialContext(context.Background(), "tcp", target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.dialed[target]++
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		go pipe(out, in)
		go pipe(in, out)
	}
}

// Close stops listening and cuts every forwarded connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.wg.Wait()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
}

// NewSentinel starts a redis-sentinel that monitors the master named
// master at 127.0.0.1:masterPort with a quorum of 1, so a test can fail
// it over with SENTINEL FAILOVER. A non-empty password is the sentinel's
// requirepass.
func NewSentinel(tb testing.TB, master string, masterPort int, password string) *Node {
	tb.Helper()
	bin, err := exec.LookPath("redis-sentinel")
	if err != nil {
		tb.Fatalf("redis-sentinel not found on PATH (install Debian's redis-sentinel; .ci/run does): %v", err)
	}
	n := &Node{Port: FreePort(tb), Dir: tb.TempDir(), tb: tb}
	n.Addr = fmt.Sprintf("127.0.0.1:%d", n.Port)
	conf := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n", n.Port, n.Dir, filepath.Join(n.Dir, "redis.log")) +
		fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 1\nsentinel down-after-milliseconds %[1]s 5000\nsentinel failover-timeout %[1]s 10000\n", master, masterPort)
	if password != "" {
		conf += "requirepass " + password + "\n"
		n.dialOpts = []redis.DialOption{redis.DialPassword(password)}
	}
	path := filepath.Join(n.Dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	n.cmd = exec.Command(bin, path)
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		tb.Fatalf("start redis-sentinel: %v", err)
	}
	tb.Cleanup(n.Stop)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := n.Try("PING"); err == nil {
			return n
		} else if time.Now().After(deadline) {
			tb.Fatalf("redis-sentinel on %s did not start: %v\n%s", n.Addr, err, n.Log())
		}
	}
}

// Failover asks a sentinel to fail its master over, retrying while the
// sentinel has not yet found a replica to promote, and waits until it
// names a new master address; it returns that address.
func (n *Node) Failover(master string) string {
	n.tb.Helper()
	old, err := redis.Strings(n.Try("SENTINEL", "get-master-addr-by-name", master))
	if err != nil {
		n.tb.Fatalf("sentinel %s: %v", n.Addr, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := n.Try("SENTINEL", "FAILOVER", master)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			n.tb.Fatalf("SENTINEL FAILOVER %s: %v\n%s", master, err, n.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		now, _ := redis.Strings(n.Try("SENTINEL", "get-master-addr-by-name", master))
		if len(now) == 2 && (now[0] != old[0] || now[1] != old[1]) {
			return net.JoinHostPort(now[0], now[1])
		}
		if time.Now().After(deadline) {
			n.tb.Fatalf("sentinel still names %v as master after a failover\n%s", old, n.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
