package sidekiq

import (
	"context"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redisurl"
	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

// RedisSettings are how to reach Redis beyond its URL: Sentinel, and the
// TLS files a private CA or client certificates need (internal/redisurl,
// so a settings package can hold them without importing this one).
type RedisSettings = redisurl.Settings

// RedisTLS mirrors redis-client's ssl_params for rediss:// URLs.
type RedisTLS = redisurl.TLS

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
