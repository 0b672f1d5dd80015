package chaos

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/jackc/pgx/v5"
)

// tcpProxy forwards to a target; cut drops every connection and refuses new
// ones until restore, which looks to clients like the server went away.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func newProxy(t *testing.T, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go func() { io.Copy(up, c); up.Close(); c.Close() }()
		go func() { io.Copy(c, up); c.Close(); up.Close() }()
	}
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

func (p *tcpProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// freshPostgres creates a database of this test's own and drops it after.
func freshPostgres(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	if err != nil {
		t.Fatalf("PostgreSQL at 127.0.0.1:5432 is required: %v", err)
	}
	name := fmt.Sprintf("chaos_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx)
	t.Cleanup(func() {
		a, err := pgx.Connect(context.Background(), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
		if err == nil {
			a.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			a.Close(context.Background())
		}
	})
	return name
}

// Case 4: the database unreachable for a while: jobs retry, and nothing is
// marked done that is not.
func TestDatabaseUnreachable(t *testing.T) {
	db := freshPostgres(t)
	px := newProxy(t, "127.0.0.1:5432")
	c := newCluster(t, fmt.Sprintf("DATABASE_URL=postgres://postgres@%s/%s?sslmode=disable", px.addr(), db))
	c.worker("report", 2, "report", "default")
	n := sized(20000, 100000)
	u := c.upload(makeCSV("D", n), "text")
	c.worker("token", 3, u.Queue)
	c.waitProgress(u.Token, n/10, n, 60*time.Second)
	px.cut()
	t.Logf("database cut at %s", time.Now().Format(time.TimeOnly))
	time.Sleep(8 * time.Second)
	px.restore()
	t.Logf("database back at %s", time.Now().Format(time.TimeOnly))
	s := c.waitFinished(u.Token, 180*time.Second)
	if s.State != "completed" {
		t.Fatalf("run: %+v", s)
	}
	r := c.verify(u.Token, "D", n)
	expectIntact(t, r, 0)
	if s.DoneCount != r.done || s.FailedCount != r.failed {
		t.Fatalf("database counts done %d failed %d, ZIP has done %d failed %d", s.DoneCount, s.FailedCount, r.done, r.failed)
	}
}

// The database cut for 30 s (10 s in the short form) mid-run, every
// connection dropped and new ones refused: the row jobs, the finalizer and
// the status writes wait or retry, the run completes once the database is
// back, every row once, and no process dies.
func TestDatabaseCutMidRun(t *testing.T) {
	db := freshPostgres(t)
	px := newProxy(t, "127.0.0.1:5432")
	c := newCluster(t, fmt.Sprintf("DATABASE_URL=postgres://postgres@%s/%s?sslmode=disable", px.addr(), db))
	c.worker("report", 2, "report", "default")
	n := sized(20000, 100000)
	cut := time.Duration(sized(10, 30)) * time.Second
	u := c.upload(makeCSV("DC", n), "text")
	tw := c.worker("token", 3, u.Queue)
	c.waitProgress(u.Token, n/10, n, 60*time.Second)
	px.cut()
	ended, _ := redis.Int(c.redisDo("GET", "pallarel:count:"+u.Token))
	t.Logf("database cut for %s with %d of %d rows ended", cut, ended, n)
	time.Sleep(cut)
	if st, _ := redis.Int(c.redisDo("GET", "pallarel:count:"+u.Token)); st < n {
		t.Logf("%d rows ended while the database was away", st-ended)
	}
	px.restore()
	back := time.Now()
	s := c.waitFinished(u.Token, 3*time.Minute)
	t.Logf("run ended %s after the database came back: %+v", time.Since(back).Round(100*time.Millisecond), s)
	if s.State != "completed" {
		t.Fatalf("run: %+v", s)
	}
	r := c.verify(u.Token, "DC", n)
	expectIntact(t, r, 0)
	if s.DoneCount != r.done || s.FailedCount != r.failed {
		t.Fatalf("database counts done %d failed %d, ZIP has done %d failed %d", s.DoneCount, s.FailedCount, r.done, r.failed)
	}
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
