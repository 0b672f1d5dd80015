package rdb

import (
	"strconv"
	"time"

	"github.com/gomodule/redigo/redis"
)

// killScript moves one member of a set to the dead set, trimmed as
// Sidekiq's DeadSet#kill does. KEYS: set, dead; ARGV: member, now score,
// cutoff score, max jobs. returns 1 if moved.
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
