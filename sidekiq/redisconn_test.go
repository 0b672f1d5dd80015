package sidekiq

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

// TestPoolTLS dials a redis-server that listens only with TLS, with a
// private CA and tls-auth-clients yes: the CA file, the client
// certificate and the server name are each needed, and verify none skips
// the CA.
func TestPoolTLS(t *testing.T) {
	files := redistest.NewTLSFiles(t)
	node := redistest.NewTLSNode(t, files, "yes")
	url := fmt.Sprintf("rediss://127.0.0.1:%d/0", node.Port)
	full := RedisTLS{CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey, ServerName: redistest.TLSServerName}
	for _, tc := range []struct {
		name    string
		tls     RedisTLS
		wantErr string // "" = works
	}{
		{"private CA, client certificate, server name", full, ""},
		{"system CAs only", RedisTLS{CertFile: files.ClientCert, KeyFile: files.ClientKey, ServerName: redistest.TLSServerName}, "certificate signed by unknown authority"},
		{"another CA", RedisTLS{CAFile: files.OtherCA, CertFile: files.ClientCert, KeyFile: files.ClientKey, ServerName: redistest.TLSServerName}, "certificate signed by unknown authority"},
		{"the dialled address as server name", RedisTLS{CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey}, "127.0.0.1"},
		{"another server name", RedisTLS{CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey, ServerName: "other.test"}, "other.test"},
		// With TLS 1.3 the server refuses a missing client certificate
		// after the client's handshake has returned: the client reads the
		// alert, or finds the connection already reset.
		{"no client certificate", RedisTLS{CAFile: files.CA, ServerName: redistest.TLSServerName}, "certificate|connection reset by peer|broken pipe|EOF"},
		{"verify none", RedisTLS{CertFile: files.ClientCert, KeyFile: files.ClientKey, Verify: "none"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := NewPoolWith(url, RedisSettings{TLS: tc.tls}, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			c := pool.Get()
			defer c.Close()
			_, err = c.Do("SET", "tls", tc.name)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("SET over TLS: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("SET over TLS worked; want an error about %q", tc.wantErr)
			case tc.wantErr != "" && !slices.ContainsFunc(strings.Split(tc.wantErr, "|"), func(w string) bool { return strings.Contains(err.Error(), w) }):
				t.Fatalf("error %v, want one about %q", err, tc.wantErr)
			}
		})
	}
	if v, _ := redis.String(node.Try("GET", "tls")); v != "verify none" {
		t.Fatalf("the server holds tls=%q", v)
	}
}

// TestPoolSentinel dials the master a redis-sentinel names (with the
// sentinel's password), and after SENTINEL FAILOVER the pool's
// connections reach the promoted replica: writes go on there.
func TestPoolSentinel(t *testing.T) {
	primary := redistest.NewNode(t)
	replica := redistest.NewNode(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port))
	sentinel := redistest.NewSentinel(t, "mymaster", primary.Port, "sentinel-secret")
	settings := RedisSettings{Sentinels: []string{"127.0.0.1:1", sentinel.Addr}, SentinelMaster: "mymaster", SentinelPassword: "sentinel-secret"}
	pool, err := NewPoolWith("redis://mymaster/0", settings, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	set := func(v string) error {
		c := pool.Get()
		defer c.Close()
		_, err := c.Do("SET", "where", v)
		return err
	}
	if err := set("before"); err != nil {
		t.Fatalf("SET through Sentinel: %v", err)
	}
	if v, _ := redis.String(primary.Try("GET", "where")); v != "before" {
		t.Fatalf("the primary holds where=%q", v)
	}
	idle := pool.Get() // a connection open on the old master across the failover
	if _, err := idle.Do("PING"); err != nil {
		t.Fatal(err)
	}
	if now := sentinel.Failover("mymaster"); now != replica.Addr {
		t.Fatalf("sentinel promoted %s, want the replica %s", now, replica.Addr)
	}
	// Sentinel demotes the old master (REPLICAOF, CLIENT KILL) a moment
	// after it promoted the replica; writes made on it before that are
	// Redis's own failover window, not the pool's.
	deadline := time.Now().Add(30 * time.Second)
	for primary.Info("role") != "slave" {
		if time.Now().After(deadline) {
			t.Fatalf("sentinel did not demote the old master\n%s", sentinel.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The write lands on the promoted replica within a few tries.
	for {
		_, err := idle.Do("SET", "where", "after")
		if err == nil {
			break
		}
		idle.Close()
		if time.Now().After(deadline) {
			t.Fatalf("no write after the failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
		idle = pool.Get()
	}
	idle.Close()
	if v, _ := redis.String(replica.Try("GET", "where")); v != "after" {
		t.Fatalf("the promoted replica holds where=%q", v)
	}

	bad, err := NewPoolWith("redis://nosuch/0", RedisSettings{Sentinels: []string{sentinel.Addr}, SentinelMaster: "nosuch", SentinelPassword: "sentinel-secret"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.GetContext(context.Background()); err == nil || !strings.Contains(err.Error(), `no master named "nosuch"`) {
		t.Fatalf("an unknown master: %v", err)
	}
}
