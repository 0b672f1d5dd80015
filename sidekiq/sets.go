package sidekiq

import (
	"strconv"

	"github.com/gomodule/redigo/redis"
)

// countInSet counts members of a sorted set whose queue is q.
func countInSet(c redis.Conn, set, q string) (int, error) {
	m, err := membersInSet(c, set, q)
	return len(m), err
}

// membersInSet lists members of a sorted set whose queue is q.
func membersInSet(c redis.Conn, set, q string) ([][]byte, error) {
	cursor := "0"
	pattern := `*"queue":` + strconv.Quote(q) + `*`
	var out [][]byte
	for {
		vals, err := redis.Values(c.Do("ZSCAN", set, cursor, "MATCH", pattern, "COUNT", 1000))
		if err != nil {
			return nil, err
		}
		cursor, _ = redis.String(vals[0], nil)
		items, _ := redis.ByteSlices(vals[1], nil)
		for i := 0; i < len(items); i += 2 {
			if j, err := ParseJob(items[i]); err == nil && j.Queue == q {
				out = append(out, items[i])
			}
		}
		if cursor == "0" {
			return out, nil
		}
	}
}
