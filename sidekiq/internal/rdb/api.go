package rdb

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/gomodule/redigo/redis"
)

// killScript moves one member of a set to the dead set, trimmed as
// Sidekiq's DeadSet#kill does (by age, then to max_jobs-1 entries), in one
// step: the poller's bad entries and the Web UI's "Kill" button.
//
//	KEYS[1] the sorted set the member is in
//	KEYS[2] dead
//	ARGV[1] the member, exact bytes
//	ARGV[2] now, as a score
//	ARGV[3] the oldest score kept (now - dead_timeout_in_seconds)
//	ARGV[4] dead_max_jobs
//	returns 1 if moved, 0 if the member was gone
var killScript = redis.NewScript(2, `
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -tonumber(ARGV[4]))
return 1`)

// MoveToDead moves member from set to the dead set with trimming.
func MoveToDead(c redis.Conn, set string, member []byte, now time.Time, lim DeadLimits) (bool, error) {
	return redis.Bool(killScript.Do(c, set, KeyDead, member, Score(now), Score(now.Add(-lim.Timeout)), lim.MaxJobs))
}

// ScoredMember is one sorted-set member with its score.
type ScoredMember struct {
	Score float64
	Raw   []byte
}

// Range lists members of a sorted set from start to stop (ranks), with
// scores, lowest score first (or highest first when rev).
func Range(c redis.Conn, set string, start, stop int, rev bool) ([]ScoredMember, error) {
	args := []any{set, start, stop}
	if rev {
		args = append(args, "REV")
	}
	args = append(args, "WITHSCORES")
	vals, err := redis.Values(c.Do("ZRANGE", args...))
	if err != nil {
		return nil, err
	}
	out := make([]ScoredMember, 0, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		raw, _ := redis.Bytes(vals[i], nil)
		s, _ := redis.String(vals[i+1], nil)
		f, _ := strconv.ParseFloat(s, 64)
		out = append(out, ScoredMember{Score: f, Raw: raw})
	}
	return out, nil
}

// AtScore lists the members whose score is exactly score.
func AtScore(c redis.Conn, set string, score string) ([][]byte, error) {
	return redis.ByteSlices(c.Do("ZRANGE", set, score, score, "BYSCORE"))
}

// errShortReply reports a reply of an unexpected shape.
func errShortReply(cmd string) error { return fmt.Errorf("%s: unexpected reply shape", cmd) }

// Totals are the Dashboard's counters read straight from Redis.
type Totals struct {
	Processed, Failed        int64
	Scheduled, Retries, Dead int64
	Processes                int64
}

// ReadTotals reads the lifetime counters, the sizes of the three sets and
// the number of registered processes (Sidekiq::Stats#fetch_stats_fast!).
func ReadTotals(c redis.Conn) (Totals, error) {
	var t Totals
	vals, err := redis.Values(c.Do("MGET", KeyStatProcessed, KeyStatFailed))
	if err != nil {
		return t, err
	}
	if len(vals) != 2 {
		return t, errShortReply("MGET")
	}
	t.Processed, _ = redis.Int64(vals[0], nil)
	t.Failed, _ = redis.Int64(vals[1], nil)
	for _, p := range []struct {
		key string
		dst *int64
	}{{KeySchedule, &t.Scheduled}, {KeyRetry, &t.Retries}, {KeyDead, &t.Dead}} {
		if *p.dst, err = redis.Int64(c.Do("ZCARD", p.key)); err != nil {
			return t, err
		}
	}
	if t.Processes, err = redis.Int64(c.Do("SCARD", KeyProcesses)); err != nil {
		return t, err
	}
	return t, nil
}

// DayCounts are one day's processed and failed counters.
type DayCounts struct{ Processed, Failed int64 }

// ReadDays reads the daily counters of each day in days, in one MGET.
func ReadDays(c redis.Conn, days []time.Time) ([]DayCounts, error) {
	if len(days) == 0 {
		return nil, nil
	}
	keys := make([]any, 0, 2*len(days))
	for _, d := range days {
		keys = append(keys, StatDaily("processed", d), StatDaily("failed", d))
	}
	vals, err := redis.Values(c.Do("MGET", keys...))
	if err != nil {
		return nil, err
	}
	if len(vals) != len(keys) {
		return nil, errShortReply("MGET")
	}
	out := make([]DayCounts, len(days))
	for i := range days {
		out[i].Processed, _ = redis.Int64(vals[2*i], nil)
		out[i].Failed, _ = redis.Int64(vals[2*i+1], nil)
	}
	return out, nil
}

// QueueHead is one queue's size and the job that runs next (nil if empty).
type QueueHead struct {
	Name   string
	Size   int64
	Oldest []byte
}

// ReadQueueHeads lists every queue in the queues set, sorted by name, with
// its size and its next job, pipelined.
func ReadQueueHeads(c redis.Conn) ([]QueueHead, error) {
	names, err := redis.Strings(c.Do("SMEMBERS", KeyQueues))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	for _, n := range names {
		if err := c.Send("LLEN", Queue(n)); err != nil {
			return nil, err
		}
		if err := c.Send("LINDEX", Queue(n), -1); err != nil {
			return nil, err
		}
	}
	if err := c.Flush(); err != nil {
		return nil, err
	}
	out := make([]QueueHead, 0, len(names))
	for _, n := range names {
		size, err := redis.Int64(c.Receive())
		if err != nil {
			return nil, err
		}
		oldest, err := redis.Bytes(c.Receive())
		if err != nil && !errors.Is(err, redis.ErrNil) {
			return nil, err
		}
		out = append(out, QueueHead{Name: n, Size: size, Oldest: oldest})
	}
	return out, nil
}

// QueueLen is the number of jobs waiting in queue.
func QueueLen(c redis.Conn, queue string) (int, error) {
	return redis.Int(c.Do("LLEN", Queue(queue)))
}

// QueueRange lists count jobs of queue from the start-th next to run, next
// to run first. The next job is at the right end, so it reads from there.
func QueueRange(c redis.Conn, queue string, start, count int) ([][]byte, error) {
	raws, err := redis.ByteSlices(c.Do("LRANGE", Queue(queue), -(start + count), -(start + 1)))
	if err != nil {
		return nil, err
	}
	slices.Reverse(raws)
	return raws, nil
}

// QueueAll lists every job of queue, last to run first (list order).
func QueueAll(c redis.Conn, queue string) ([][]byte, error) {
	return redis.ByteSlices(c.Do("LRANGE", Queue(queue), 0, -1))
}

// Listed reports whether queue is in the queues set.
func Listed(c redis.Conn, queue string) (bool, error) {
	return redis.Bool(c.Do("SISMEMBER", KeyQueues, queue))
}

// RemoveFromQueue removes one job from queue by its exact bytes.
func RemoveFromQueue(c redis.Conn, queue string, raw []byte) (bool, error) {
	n, err := redis.Int(c.Do("LREM", Queue(queue), 1, raw))
	return n > 0, err
}

// DeleteQueue removes a queue and its jobs and unlists it, in one MULTI
// (Sidekiq::Queue#clear). It returns how many jobs the queue held.
func DeleteQueue(c redis.Conn, queue string) (int, error) {
	if err := c.Send("MULTI"); err != nil {
		return 0, err
	}
	_ = c.Send("LLEN", Queue(queue))
	_ = c.Send("UNLINK", Queue(queue))
	_ = c.Send("SREM", KeyQueues, queue)
	vals, err := redis.Values(c.Do("EXEC"))
	if err != nil {
		return 0, err
	}
	if len(vals) != 3 {
		return 0, errShortReply("EXEC")
	}
	return redis.Int(vals[0], nil)
}

// SetSize is the number of members of a sorted set.
func SetSize(c redis.Conn, set string) (int64, error) {
	return redis.Int64(c.Do("ZCARD", set))
}

// RemoveMembers removes members of a sorted set by their exact bytes, in
// one ZREM; it returns how many were there.
func RemoveMembers(c redis.Conn, set string, members ...[]byte) (int, error) {
	if len(members) == 0 {
		return 0, nil
	}
	args := make([]any, 0, 1+len(members))
	args = append(args, set)
	for _, m := range members {
		args = append(args, m)
	}
	return redis.Int(c.Do("ZREM", args...))
}

// Unlink deletes keys.
func Unlink(c redis.Conn, keys ...string) error {
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	_, err := c.Do("UNLINK", args...)
	return err
}

// ProcessHash is the part of a heartbeat hash the Busy page reads; every
// field is "" when the hash has expired.
type ProcessHash struct {
	Identity                     string
	Info, Busy, Beat, Quiet, RSS string
}

// ReadProcesses lists the registered processes, sorted by identity, with
// their heartbeat fields, pipelined.
func ReadProcesses(c redis.Conn) ([]ProcessHash, error) {
	ids, err := redis.Strings(c.Do("SMEMBERS", KeyProcesses))
	if err != nil {
		return nil, err
	}
	sort.Strings(ids)
	for _, id := range ids {
		if err := c.Send("HMGET", id, "info", "busy", "beat", "quiet", "rss"); err != nil {
			return nil, err
		}
	}
	if err := c.Flush(); err != nil {
		return nil, err
	}
	out := make([]ProcessHash, 0, len(ids))
	for _, id := range ids {
		vals, err := redis.Strings(c.Receive())
		if err != nil {
			return nil, err
		}
		if len(vals) != 5 {
			return nil, errShortReply("HMGET")
		}
		out = append(out, ProcessHash{Identity: id, Info: vals[0], Busy: vals[1], Beat: vals[2], Quiet: vals[3], RSS: vals[4]})
	}
	return out, nil
}

// ReadWork reads a process's work hash (tid → work JSON).
func ReadWork(c redis.Conn, identity string) (map[string]string, error) {
	return redis.StringMap(c.Do("HGETALL", Work(identity)))
}

// InflightLen is the number of jobs on identity's in-flight list for queue.
func InflightLen(c redis.Conn, identity, queue string) (int, error) {
	return redis.Int(c.Do("LLEN", Inflight(identity, queue)))
}
