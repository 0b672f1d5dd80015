package rdb

import (
	"strconv"
	"strings"

	"github.com/gomodule/redigo/redis"
)

// SetCandidatesForQueue lists the members of a sorted set whose JSON seems
// to name queue: ZSCAN with MATCH *"queue":"<queue>"*. A member passes when
// those bytes appear anywhere in it (an argument may hold them too), so the
// caller keeps only members whose parsed queue is queue.
func SetCandidatesForQueue(c redis.Conn, set, queue string) ([][]byte, error) {
	pattern := QueueMatchPattern(queue)
	cursor := "0"
	var out [][]byte
	for {
		vals, err := redis.Values(c.Do("ZSCAN", set, cursor, "MATCH", pattern, "COUNT", 1000))
		if err != nil {
			return nil, err
		}
		if len(vals) != 2 {
			return nil, errShortReply("ZSCAN")
		}
		cursor, _ = redis.String(vals[0], nil)
		items, _ := redis.ByteSlices(vals[1], nil)
		for i := 0; i < len(items); i += 2 {
			out = append(out, items[i])
		}
		if cursor == "0" {
			return out, nil
		}
	}
}

// QueueMatchPattern is the glob that matches a job JSON naming queue. The
// queue name is escaped, so a name such as "q[1]" or "a*" matches itself
// and nothing else.
func QueueMatchPattern(queue string) string {
	return `*"queue":` + globEscape(strconv.Quote(queue)) + `*`
}

// globEscape quotes the characters Redis's glob (stringmatchlen) treats as
// special; a backslash makes the next character literal.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
