package rdb

import (
	"time"

	"github.com/gomodule/redigo/redis"
)

// promoteScript moves one due member of a sorted set onto its queue, with
// the JSON the caller rewrote (fresh enqueued_at). Only the caller whose
// ZREM succeeds pushes, so many pollers never enqueue a job twice, and
// nothing is lost between the removal and the push.
//
//	KEYS[1] the sorted set (schedule, retry or dead)
//	KEYS[2] queue:<q>
//	KEYS[3] queues
//	ARGV[1] the member, exact bytes
//	ARGV[2] the job JSON to push
//	ARGV[3] the queue name
//	returns 1 if moved, 0 if the member was gone
var promoteScript = redis.NewScript(3, `
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  redis.call('SADD', KEYS[3], ARGV[3])
  return 1
end
return 0`)

// Due returns up to limit members of set whose score is at most now.
func Due(c redis.Conn, set string, now time.Time, limit int) ([][]byte, error) {
	return redis.ByteSlices(c.Do("ZRANGE", set, "-inf", Score(now), "BYSCORE", "LIMIT", 0, limit))
}

// Promote moves member from set to queue as newJSON; false if another
// process took it first.
func Promote(c redis.Conn, set, queue string, member, newJSON []byte) (bool, error) {
	return redis.Bool(promoteScript.Do(c, set, Queue(queue), KeyQueues, member, newJSON, queue))
}
