package rdb

import (
	"errors"
	"time"

	"github.com/gomodule/redigo/redis"
)

// FlushStats adds processed and failed to the lifetime and daily counters,
// as Sidekiq's launcher flushes them at each heartbeat.
func FlushStats(c redis.Conn, now time.Time, processed, failed int64) error {
	if processed == 0 && failed == 0 {
		return nil
	}
	// Both counters, even at 0, as launcher.rb flush_stats writes them.
	n := 0
	for _, s := range []struct {
		kind string
		v    int64
	}{{"processed", processed}, {"failed", failed}} {
		day := StatDaily(s.kind, now)
		if err := c.Send("INCRBY", "stat:"+s.kind, s.v); err != nil {
			return err
		}
		if err := c.Send("INCRBY", day, s.v); err != nil {
			return err
		}
		if err := c.Send("EXPIRE", day, StatsTTL); err != nil {
			return err
		}
		n += 3
	}
	return receiveAll(c, n)
}

// WriteWork replaces the hash of running jobs (tid → work JSON). legacy
// also writes <identity>:workers, which Sidekiq 6.4.1's Web UI reads.
func WriteWork(c redis.Conn, identity string, work map[string][]byte, legacy bool, ttl int) error {
	keys := []string{Work(identity)}
	if legacy {
		keys = append(keys, Workers(identity))
	}
	if err := c.Send("MULTI"); err != nil {
		return err
	}
	for _, k := range keys {
		if err := c.Send("UNLINK", k); err != nil {
			return err
		}
		if len(work) == 0 {
			continue
		}
		args := make([]any, 0, 1+2*len(work))
		args = append(args, k)
		for tid, w := range work {
			args = append(args, tid, w)
		}
		if err := c.Send("HSET", args...); err != nil {
			return err
		}
		if err := c.Send("EXPIRE", k, ttl); err != nil {
			return err
		}
	}
	_, err := c.Do("EXEC")
	return err
}

// Beat registers the process and writes its heartbeat hash, then pops one
// signal the Web UI may have sent. It reports whether the hash existed
// before (false on the first beat or after an outage).
func Beat(c redis.Conn, identity string, fields []any, ttl int) (signal string, existed bool, err error) {
	if err := c.Send("MULTI"); err != nil {
		return "", false, err
	}
	_ = c.Send("SADD", KeyProcesses, identity)
	_ = c.Send("EXISTS", identity)
	_ = c.Send("HSET", append([]any{identity}, fields...)...)
	_ = c.Send("EXPIRE", identity, ttl)
	_ = c.Send("RPOP", Signals(identity))
	vals, err := redis.Values(c.Do("EXEC"))
	if err != nil {
		return "", false, err
	}
	if len(vals) != 5 {
		return "", false, errors.New("heartbeat: short EXEC reply")
	}
	existed, _ = redis.Bool(vals[1], nil)
	if vals[4] != nil {
		signal, _ = redis.String(vals[4], nil)
	}
	return signal, existed, nil
}

// Ping times one round trip, for the heartbeat's rtt_us.
func Ping(c redis.Conn) (time.Duration, error) {
	t := time.Now()
	_, err := c.Do("PING")
	return time.Since(t), err
}

// ClearProcess removes the process from the process set and its work keys,
// as Sidekiq's launcher does at a clean shutdown; the heartbeat hash is
// marked quiet and left to expire.
func ClearProcess(c redis.Conn, identity string) error {
	if err := c.Send("MULTI"); err != nil {
		return err
	}
	_ = c.Send("SREM", KeyProcesses, identity)
	_ = c.Send("UNLINK", Work(identity), Workers(identity))
	_ = c.Send("HSET", identity, "quiet", "true", "busy", 0)
	_, err := c.Do("EXEC")
	return err
}

// BeatCapsule keeps a capsule of process alive for ttl seconds: its
// in-flight lists are then a live process's (Alive).
func BeatCapsule(c redis.Conn, capsule, process string, ttl int) error {
	if err := c.Send("MULTI"); err != nil {
		return err
	}
	_ = c.Send("HSET", Capsule(capsule), "process", process)
	_ = c.Send("EXPIRE", Capsule(capsule), ttl)
	_, err := c.Do("EXEC")
	return err
}

// ClearCapsule ends a capsule that gave back its in-flight jobs.
func ClearCapsule(c redis.Conn, capsule string) error {
	_, err := c.Do("UNLINK", Capsule(capsule))
	return err
}

// CapsuleProcess is the identity of the process entry a capsule beats in,
// "" when identity is no live capsule.
func CapsuleProcess(c redis.Conn, identity string) (string, error) {
	p, err := redis.String(c.Do("HGET", Capsule(identity), "process"))
	if errors.Is(err, redis.ErrNil) {
		return "", nil
	}
	return p, err
}

// ProcessCount is the number of registered processes (at least 1).
func ProcessCount(c redis.Conn) (int, error) {
	n, err := redis.Int(c.Do("SCARD", KeyProcesses))
	return max(n, 1), err
}

// Signal sends a signal to a process the way the Web UI does.
func Signal(c redis.Conn, identity, sig string) error {
	if err := c.Send("MULTI"); err != nil {
		return err
	}
	_ = c.Send("LPUSH", Signals(identity), sig)
	_ = c.Send("EXPIRE", Signals(identity), ProcessTTL)
	_, err := c.Do("EXEC")
	return err
}
