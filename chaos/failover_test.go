package chaos

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/sidekiq"
)

// failoverCluster is a supervised cluster on url (with settings for the
// test's own pool), its report worker started.
func failoverCluster(t *testing.T, url string, settings sidekiq.RedisSettings, env ...string) *cluster {
	t.Helper()
	pool, err := sidekiq.NewPoolWith(url, settings, 8)
	if err != nil {
		t.Fatal(err)
	}
	c := newClusterAt(t, url, pool, append(supervisedEnv(), env...)...)
	c.worker("report", 2, "report", "default")
	return c
}

// primaryAndReplica starts two redis-servers, the second a replica of the
// first, and waits until the replica has synchronised (a failover before
// that would promote an empty replica: Redis's diskless sync waits 5 s
// by default).
func primaryAndReplica(t *testing.T) (primary, replica *redistest.Node) {
	t.Helper()
	primary = redistest.NewNode(t, "--repl-diskless-sync-delay", "0")
	replica = redistest.NewNode(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port))
	for deadline := time.Now().Add(30 * time.Second); replica.Info("master_link_status") != "up"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the replica did not synchronise:\n%s", replica.Log())
		}
	}
	return primary, replica
}

// Case: a managed Redis's failover, as ElastiCache Multi-AZ does it. Two
// redis-servers, the second a replica of the first; every process reaches
// Redis through a proxy standing for the primary endpoint's DNS name.
// Mid-run the primary pauses writes, the replica catches up and is
// promoted, the endpoint moves to it, and the old primary becomes its
// replica while staying up, so connections already open on it stay open
// and get READONLY (the case that used to stop every worker for good).
// The run completes within a minute of the switch with every row once.
func TestPrimaryDemotedMidRun(t *testing.T) {
	a, b := primaryAndReplica(t)
	proxy := redistest.NewProxy(t, a.Addr)
	c := failoverCluster(t, "redis://"+proxy.Addr+"/0", sidekiq.RedisSettings{})
	n := sized(20000, 100000)
	u := c.upload(makeCSV("F", n), "text")
	ended := c.waitProgress(u.Token, n/10, n, 2*time.Minute)

	a.Do("CLIENT", "PAUSE", 10000, "WRITE")
	want := a.Info("master_repl_offset")
	for deadline := time.Now().Add(10 * time.Second); b.Info("slave_repl_offset") != want; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the replica did not catch up: offset %s, primary %s", b.Info("slave_repl_offset"), want)
		}
	}
	b.Do("REPLICAOF", "NO", "ONE")
	proxy.SetTarget(b.Addr)
	a.Do("REPLICAOF", "127.0.0.1", b.Port)
	a.Do("CLIENT", "UNPAUSE")
	switched := time.Now()
	t.Logf("failed over at %d/%d rows", ended, n)

	s := c.waitFinished(u.Token, time.Minute)
	if s.State != "completed" {
		t.Fatalf("run %+v, a minute after the failover", s)
	}
	t.Logf("completed %s after the failover", time.Since(switched).Round(time.Millisecond))
	// The fault landed: Go processes wrote to the demoted primary and were
	// refused, then carried on on the new one.
	if stat := a.Info("errorstat_READONLY"); stat == "" || stat == "count=0" {
		t.Fatalf("the demoted primary refused no write (errorstat_READONLY %q): the failover did not reach a connection", stat)
	} else {
		t.Logf("the demoted primary answered READONLY %s", stat)
	}
	expectIntact(t, c.verify(u.Token, "F", n), 0)
}

// Case: Redis Sentinel (Debian's redis-sentinel) fails the master over
// mid-run; the processes find the promoted replica through the sentinels
// and the run completes within a minute with every row once.
func TestSentinelFailoverMidRun(t *testing.T) {
	a, b := primaryAndReplica(t)
	sentinel := redistest.NewSentinel(t, "mymaster", a.Port, "sentinel-pw")
	settings := sidekiq.RedisSettings{Sentinels: []string{sentinel.Addr}, SentinelMaster: "mymaster", SentinelPassword: "sentinel-pw"}
	c := failoverCluster(t, "redis://mymaster/0", settings,
		"REDIS_SENTINELS="+sentinel.Addr, "REDIS_SENTINEL_MASTER=mymaster", "REDIS_SENTINEL_PASSWORD=sentinel-pw")
	n := sized(20000, 100000)
	u := c.upload(makeCSV("G", n), "text")
	ended := c.waitProgress(u.Token, n/10, n, 2*time.Minute)
	// Writes are paused on the master until the replica has caught up
	// and Sentinel has demoted the old master (it kills the old master's
	// clients, so their paused writes never land there): a failover that
	// loses no acknowledged write. An unpaused one loses what the old
	// master took between the promotion and its demotion, which this
	// case does not test (see RELIABILITY.md).
	a.Do("CLIENT", "PAUSE", 15000, "WRITE")
	want := a.Info("master_repl_offset")
	for deadline := time.Now().Add(10 * time.Second); b.Info("slave_repl_offset") != want; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the replica did not catch up: offset %s, master %s", b.Info("slave_repl_offset"), want)
		}
	}
	if now := sentinel.Failover("mymaster"); now != b.Addr {
		t.Fatalf("sentinel promoted %s, want %s", now, b.Addr)
	}
	switched := time.Now()
	// The demotion drops the old master's clients: an INFO that meets it
	// fails, and the next one is asked.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if role, err := a.TryInfo("role"); err == nil && role == "slave" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel did not demote the old master:\n%s", sentinel.Log())
		}
	}
	a.Do("CLIENT", "UNPAUSE")
	t.Logf("sentinel failed over at %d/%d rows", ended, n)
	s := c.waitFinished(u.Token, time.Minute)
	if s.State != "completed" {
		t.Fatalf("run %+v, a minute after the failover", s)
	}
	t.Logf("completed %s after the failover", time.Since(switched).Round(time.Millisecond))
	if role := a.Info("role"); role != "slave" {
		t.Fatalf("the old master is a %q: the failover did not happen", role)
	}
	if ended, _ := redis.Int(b.Try("GET", "pallarel:count:"+u.Token)); ended != n {
		t.Fatalf("the promoted master counts %d rows of %d", ended, n)
	}
	expectIntact(t, c.verify(u.Token, "G", n), 0)
}

// Case: Redis over TLS only, with a private CA and client certificates
// required (tls-auth-clients yes), the server name checked against the
// certificate: every process connects with the REDIS_TLS_* settings and a
// run completes; a worker without the client certificate is refused.
func TestRedisTLSWithClientCertificates(t *testing.T) {
	files := redistest.NewTLSFiles(t)
	node := redistest.NewTLSNode(t, files, "yes")
	url := fmt.Sprintf("rediss://127.0.0.1:%d/0", node.Port)
	tlsSettings := sidekiq.RedisTLS{CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey, ServerName: redistest.TLSServerName}
	c := failoverCluster(t, url, sidekiq.RedisSettings{TLS: tlsSettings},
		"REDIS_TLS_CA_FILE="+files.CA, "REDIS_TLS_CERT_FILE="+files.ClientCert, "REDIS_TLS_KEY_FILE="+files.ClientKey,
		"REDIS_TLS_SERVER_NAME="+redistest.TLSServerName)
	const n = 300
	u := c.upload(makeCSV("T", n), "text")
	if s := c.waitFinished(u.Token, 2*time.Minute); s.State != "completed" {
		t.Fatalf("run %+v", s)
	}
	expectIntact(t, c.verify(u.Token, "T", n), 0)
	if clients := node.Info("connected_clients"); clients == "" || clients == "0" {
		t.Fatalf("no client connected over TLS (%q)", clients)
	}

	// Without the client certificate the server refuses the worker, which
	// exits with an error.
	var env []string
	for _, kv := range c.env {
		if !strings.HasPrefix(kv, "REDIS_TLS_CERT_FILE=") && !strings.HasPrefix(kv, "REDIS_TLS_KEY_FILE=") {
			env = append(env, kv)
		}
	}
	c.env = env
	p := c.start("no-cert", "worker", "-q", "report-00000000000000ff", "--idle-timeout", "2s")
	if err := c.wait(p, time.Minute); err == nil {
		t.Fatalf("a worker without a client certificate exited 0:\n%s", p.log.String())
	}
	// With TLS 1.3 the client may see only a reset connection; the server
	// says why it refused.
	if log := node.Log(); !strings.Contains(log, "certificate") {
		t.Fatalf("the server did not refuse a client for its certificate:\n%s\nworker:\n%s", tail(log, 2000), tail(p.log.String(), 2000))
	}
}
