package sidekiq

import (
	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

// countInSet counts members of a sorted set whose queue is q.
func countInSet(c redis.Conn, set, q string) (int, error) {
	m, err := membersInSet(c, set, q)
	return len(m), err
}

// membersInSet lists members of a sorted set whose queue is q. Redis finds
// the members whose JSON mentions the queue; a member counts only when its
// parsed queue is q (the bytes may sit in an argument).
func membersInSet(c redis.Conn, set, q string) ([][]byte, error) {
	cands, err := rdb.SetCandidatesForQueue(c, set, q)
	if err != nil {
		return nil, err
	}
	out := cands[:0]
	for _, raw := range cands {
		if j, err := ParseJob(raw); err == nil && j.Queue == q {
			out = append(out, raw)
		}
	}
	return out, nil
}
