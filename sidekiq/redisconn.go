package sidekiq

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"os"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

// RedisSettings are how to reach Redis beyond its URL: Sentinel, and the
// TLS files a private CA or client certificates need. The zero value dials
// the URL's host as it is.
type RedisSettings struct {
	// Sentinels are host:port of Redis Sentinels to ask for the address of
	// the master named SentinelMaster (redis-client's `sentinels:` and
	// `name:`). Each new connection asks again, so one made after a
	// failover reaches the promoted master. The URL then gives only the
	// password, user, database and scheme.
	Sentinels        []string
	SentinelMaster   string
	SentinelUsername string
	SentinelPassword string

	TLS RedisTLS
}

// RedisTLS mirrors redis-client's ssl_params for rediss:// URLs.
type RedisTLS struct {
	CAFile     string // PEM CAs trusted instead of the system's (ca_file)
	CertFile   string // client certificate (cert)
	KeyFile    string // its key (key)
	ServerName string // name checked against the certificate; default: the URL's host
	Verify     string // "peer" (default) or "none" (verify_mode)
}

// IsZero reports whether no TLS setting was given.
func (t RedisTLS) IsZero() bool { return t == RedisTLS{} }

// Config builds the TLS configuration, reading the files.
func (t RedisTLS) Config() (*tls.Config, error) {
	cfg := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
	switch t.Verify {
	case "", "peer":
	case "none":
		cfg.InsecureSkipVerify = true
	default:
		return nil, fmt.Errorf("TLS verify %q: want peer or none", t.Verify)
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA file %s: no PEM certificate in it", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("TLS client certificate: give both the certificate and the key file")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Validate checks the settings against the URL without connecting: it
// reads the TLS files, so a missing one fails at start.
func (s RedisSettings) Validate(url string) error {
	var errs []error
	if !s.TLS.IsZero() {
		if u, err := neturl.Parse(url); err == nil && u.Scheme != "rediss" {
			errs = append(errs, errors.New("TLS settings need a rediss:// URL"))
		}
		if _, err := s.TLS.Config(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(s.Sentinels) > 0 && s.SentinelMaster == "" {
		errs = append(errs, errors.New("Sentinel: no master name"))
	}
	for _, a := range s.Sentinels {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("Sentinel address %q: want host:port", a))
		}
	}
	return errors.Join(errs...)
}

// NewPoolWith opens a redigo pool on a Redis URL (see NewPool) with the
// settings s. Every connection it hands out heals after a failover: an
// error reply that says the server cannot take the command now (READONLY,
// NOREPLICAS, UNBLOCKED, LOADING, MASTERDOWN) drops it, and a lone command
// is sent again on a fresh one (failover.go).
func NewPoolWith(url string, s RedisSettings, size int) (*redis.Pool, error) {
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	if err := ValidRedisURL(url); err != nil {
		return nil, err
	}
	if err := s.Validate(url); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	dial, err := newDialer(url, s)
	if err != nil {
		return nil, err
	}
	return &redis.Pool{
		MaxIdle:     size,
		IdleTimeout: 5 * time.Minute,
		DialContext: func(ctx context.Context) (redis.Conn, error) {
			c, err := dial(ctx)
			if err != nil {
				return nil, err
			}
			return newFailoverConn(c, dial), nil
		},
		// A connection idle for a second is checked before use, so one
		// that Redis closed (restart, CLIENT KILL, timeout) is replaced
		// instead of failing a push; busy connections are not pinged.
		TestOnBorrow: func(c redis.Conn, t time.Time) error {
			if time.Since(t) < time.Second {
				return nil
			}
			_, err := rdb.Ping(c)
			return err
		},
	}, nil
}

// newDialer returns the function that makes one plain connection: to the
// URL's host, or to the master the sentinels name.
func newDialer(url string, s RedisSettings) (func(context.Context) (redis.Conn, error), error) {
	opts := []redis.DialOption{
		redis.DialConnectTimeout(5 * time.Second),
		redis.DialReadTimeout(10 * time.Second),
		redis.DialWriteTimeout(10 * time.Second),
	}
	if !s.TLS.IsZero() {
		cfg, err := s.TLS.Config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, redis.DialTLSConfig(cfg)) // used as it is, verify setting included
	}
	if len(s.Sentinels) == 0 {
		return func(ctx context.Context) (redis.Conn, error) {
			return redis.DialURLContext(ctx, url, opts...)
		}, nil
	}
	u, err := neturl.Parse(url)
	if err != nil {
		return nil, err
	}
	sent := &sentinels{addrs: append([]string(nil), s.Sentinels...), master: s.SentinelMaster,
		username: s.SentinelUsername, password: s.SentinelPassword}
	return func(ctx context.Context) (redis.Conn, error) {
		addr, err := sent.masterAddr(ctx)
		if err != nil {
			return nil, err
		}
		at := *u
		at.Host = addr
		c, err := redis.DialURLContext(ctx, at.String(), opts...)
		if err != nil {
			return nil, fmt.Errorf("redis master %s at %s: %w", s.SentinelMaster, addr, err)
		}
		// The sentinels may still name the old master for a moment after
		// a failover; a connection to a replica would only be dropped at
		// its first write, so it is refused here (the Sentinel client
		// guidelines' role check).
		role, err := redis.Values(redis.DoContext(c, ctx, "ROLE"))
		if err != nil || roleOf(role) != "master" {
			c.Close()
			return nil, fmt.Errorf("redis master %s at %s: not a master (role %q, %v)", s.SentinelMaster, addr, roleOf(role), err)
		}
		return c, nil
	}, nil
}

// sentinels asks Redis Sentinels where a master is, as the Sentinel client
// guidelines say: each in turn, the first that answers moved to the front.
type sentinels struct {
	mu                         sync.Mutex
	addrs                      []string
	master, username, password string
}

func (s *sentinels) masterAddr(ctx context.Context) (string, error) {
	s.mu.Lock()
	addrs := append([]string(nil), s.addrs...)
	s.mu.Unlock()
	var errs []error
	for _, a := range addrs {
		addr, err := s.ask(ctx, a)
		if err == nil {
			s.mu.Lock()
			s.promote(a)
			s.mu.Unlock()
			return addr, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return "", fmt.Errorf("no sentinel named master %q: %w", s.master, errors.Join(errs...))
}

func (s *sentinels) promote(a string) {
	for i, x := range s.addrs {
		if x == a {
			copy(s.addrs[1:i+1], s.addrs[:i])
			s.addrs[0] = a
			return
		}
	}
}

func (s *sentinels) ask(ctx context.Context, sentinel string) (string, error) {
	opts := []redis.DialOption{redis.DialConnectTimeout(time.Second),
		redis.DialReadTimeout(time.Second), redis.DialWriteTimeout(time.Second)}
	if s.password != "" {
		opts = append(opts, redis.DialPassword(s.password))
	}
	if s.username != "" {
		opts = append(opts, redis.DialUsername(s.username))
	}
	c, err := redis.DialContext(ctx, "tcp", sentinel, opts...)
	if err != nil {
		return "", fmt.Errorf("sentinel %s: %w", sentinel, err)
	}
	defer c.Close()
	hp, err := redis.Strings(redis.DoContext(c, ctx, "SENTINEL", "get-master-addr-by-name", s.master))
	switch {
	case errors.Is(err, redis.ErrNil):
		return "", fmt.Errorf("sentinel %s: no master named %q", sentinel, s.master)
	case err != nil:
		return "", fmt.Errorf("sentinel %s: %w", sentinel, err)
	case len(hp) != 2:
		return "", fmt.Errorf("sentinel %s: master address %q", sentinel, hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}
