package rdb

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Score formats a time as a sorted-set score: float epoch seconds, as every
// Sidekiq version writes them.
func Score(t time.Time) string {
	return strconv.FormatFloat(float64(t.Unix())+float64(t.Nanosecond())/1e9, 'f', -1, 64)
}

// QueuedJob is one job for Push: its queue and its JSON.
type QueuedJob struct {
	Queue string
	JSON  []byte
}

// Push adds jobs to their queues in one pipelined round trip: SADD queues,
// then one LPUSH per queue, as Sidekiq 8's client.rb atomic_push does.
func Push(c redis.Conn, jobs []QueuedJob) error {
	if len(jobs) == 0 {
		return nil
	}
	order := make([]string, 0, 1)
	byQueue := make(map[string][]any, 1)
	for _, j := range jobs {
		if _, ok := byQueue[j.Queue]; !ok {
			order = append(order, j.Queue)
			byQueue[j.Queue] = []any{Queue(j.Queue)}
		}
		byQueue[j.Queue] = append(byQueue[j.Queue], j.JSON)
	}
	sadd := make([]any, 0, len(order)+1)
	sadd = append(sadd, KeyQueues)
	for _, q := range order {
		sadd = append(sadd, q)
	}
	if err := c.Send("SADD", sadd...); err != nil {
		return err
	}
	for _, q := range order {
		if err := c.Send("LPUSH", byQueue[q]...); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return err
	}
	var first error
	for range len(order) + 1 {
		if _, err := c.Receive(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// pushListedScript pushes jobs onto a queue only while the queue is in
// "queues": the check and the push in one step, so a "Delete queue"
// (UNLINK the list, SREM it from "queues") cannot fall between them and
// be undone by the push listing the queue again. LPUSH takes the jobs in
// chunks: unpack is bounded by Lua's C stack.
var pushListedScript = redis.NewScript(2, `
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 0 end
for i = 2, #ARGV, 500 do
  redis.call('LPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 499, #ARGV)))
end
return 1`)

// PushListed adds jobs to queue only if queue is in Sidekiq's "queues" set,
// atomically; listed is false, and nothing pushed, when it is not.
func PushListed(c redis.Conn, queue string, jobs [][]byte) (listed bool, err error) {
	if len(jobs) == 0 {
		return redis.Bool(c.Do("SISMEMBER", KeyQueues, queue))
	}
	args := make([]any, 0, len(jobs)+3)
	args = append(args, KeyQueues, Queue(queue), queue)
	for _, j := range jobs {
		args = append(args, j)
	}
	return redis.Bool(pushListedScript.Do(c, args...))
}

// ScheduledJob is one member for Schedule.
type ScheduledJob struct {
	At   time.Time
	JSON []byte
}

// Schedule adds jobs to the schedule set in one ZADD.
func Schedule(c redis.Conn, jobs []ScheduledJob) error {
	if len(jobs) == 0 {
		return nil
	}
	args := make([]any, 0, 1+2*len(jobs))
	args = append(args, KeySchedule)
	for _, j := range jobs {
		args = append(args, Score(j.At), j.JSON)
	}
	_, err := c.Do("ZADD", args...)
	return err
}

// BlockingFetchReliable waits up to timeout for a job on one queue and moves
// it onto the in-flight list (BLMOVE). nil means the wait timed out.
func BlockingFetchReliable(c redis.Conn, identity, queue string, timeout time.Duration) ([]byte, error) {
	v, err := redis.Bytes(redis.DoWithTimeout(c, timeout+BlockingGrace, "BLMOVE", Queue(queue),
		Inflight(identity, queue), "RIGHT", "LEFT", strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64)))
	if errors.Is(err, redis.ErrNil) {
		return nil, nil
	}
	return v, err
}

// BlockingGrace is added to a blocking command's server-side timeout to get
// the client read deadline, so an idle wait never reads as a network error.
const BlockingGrace = 5 * time.Second

// FetchBasic is Sidekiq's BasicFetch: BRPOP over the queues in order.
func FetchBasic(c redis.Conn, queues []string, timeout time.Duration) (string, []byte, error) {
	args := make([]any, 0, len(queues)+1)
	for _, q := range queues {
		args = append(args, Queue(q))
	}
	args = append(args, strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64))
	vals, err := redis.Values(redis.DoWithTimeout(c, timeout+BlockingGrace, "BRPOP", args...))
	if errors.Is(err, redis.ErrNil) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	var key string
	var job []byte
	if _, err := redis.Scan(vals, &key, &job); err != nil {
		return "", nil, fmt.Errorf("brpop reply: %w", err)
	}
	return key[len("queue:"):], job, nil
}

// RegisterInflight records that identity may keep in-flight lists for queues.
func RegisterInflight(c redis.Conn, identity string, queues []string) error {
	args := []any{KeyInflightIndex}
	for _, q := range queues {
		args = append(args, InflightMember(identity, q))
	}
	_, err := c.Do("SADD", args...)
	return err
}

// InflightEntries lists the jobs on identity's in-flight list for queue.
func InflightEntries(c redis.Conn, identity, queue string) ([][]byte, error) {
	return redis.ByteSlices(c.Do("LRANGE", Inflight(identity, queue), 0, -1))
}

// Ack removes a finished job from its in-flight list.
func Ack(c redis.Conn, identity, queue string, job []byte) error {
	_, err := c.Do("LREM", Inflight(identity, queue), -1, job)
	return err
}

// requeueScript gives one in-flight job back to the right end of its queue
// (it runs next), as Sidekiq's hard shutdown does with RPUSH.
// KEYS: inflight, queue:<q>; ARGV: job. returns 1 if it was in flight.
var requeueScript = redis.NewScript(2, `
local n = redis.call('LREM', KEYS[1], -1, ARGV[1])
if n > 0 then redis.call('RPUSH', KEYS[2], ARGV[1]) end
return n`)

// Requeue gives an in-flight job back to its queue. With reliable=false the
// job is simply pushed back (BasicFetch).
func Requeue(c redis.Conn, identity, queue string, job []byte, reliable bool) error {
	if !reliable {
		_, err := c.Do("RPUSH", Queue(queue), job)
		return err
	}
	_, err := requeueScript.Do(c, Inflight(identity, queue), Queue(queue), job)
	return err
}

// RequeueMany gives jobs back to the right end of their queues in one
// transaction, so the queue reads as before they were fetched: jobs are in
// fetch order (oldest first) and the first ends rightmost, to run next.
// With reliable=false the jobs are simply pushed back (BasicFetch).
func RequeueMany(c redis.Conn, identity string, jobs []AckedJob, reliable bool) error {
	if len(jobs) == 0 {
		return nil
	}
	if err := c.Send("MULTI"); err != nil {
		return err
	}
	for i := len(jobs) - 1; i >= 0; i-- {
		j := jobs[i]
		var err error
		if reliable {
			err = requeueScript.Send(c, Inflight(identity, j.Queue), Queue(j.Queue), j.Raw)
		} else {
			err = c.Send("RPUSH", Queue(j.Queue), j.Raw)
		}
		if err != nil {
			return err
		}
	}
	replies, err := redis.Values(c.Do("EXEC"))
	if err != nil {
		return err
	}
	for _, r := range replies {
		if e, ok := r.(redis.Error); ok {
			return e
		}
	}
	return nil
}

// recoverScript moves every job of a dead process's in-flight list back to
// its queue, oldest ending at the right end so it runs first.
// KEYS: inflight, queue:<q>, inflight index, queues; ARGV: index member, queue name.
// returns the number of jobs moved.
var recoverScript = redis.NewScript(4, `
local n = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') do n = n + 1 end
redis.call('SREM', KEYS[3], ARGV[1])
if n > 0 then redis.call('SADD', KEYS[4], ARGV[2]) end
return n`)

// Orphan is an in-flight list whose owner may be dead.
type Orphan struct{ Identity, Queue string }

// InflightOwners lists every (identity, queue) pair in the in-flight index.
func InflightOwners(c redis.Conn) ([]Orphan, error) {
	members, err := redis.Strings(c.Do("SMEMBERS", KeyInflightIndex))
	if err != nil {
		return nil, err
	}
	out := make([]Orphan, 0, len(members))
	for _, m := range members {
		for i := len(m) - 1; i >= 0; i-- {
			if m[i] == '|' {
				out = append(out, Orphan{Identity: m[:i], Queue: m[i+1:]})
				break
			}
		}
	}
	return out, nil
}

// Alive reports whether identity's heartbeat hash still exists, or, for a
// capsule, the key its process's heartbeat keeps for it.
func Alive(c redis.Conn, identity string) (bool, error) {
	n, err := redis.Int(c.Do("EXISTS", identity, Capsule(identity)))
	return n > 0, err
}

// RecoverInflight returns a dead process's in-flight jobs to their queue.
func RecoverInflight(c redis.Conn, o Orphan) (int, error) {
	return redis.Int(recoverScript.Do(c, Inflight(o.Identity, o.Queue), Queue(o.Queue),
		KeyInflightIndex, KeyQueues, InflightMember(o.Identity, o.Queue), o.Queue))
}

// DeadLimits are Sidekiq's dead set trimming settings.
type DeadLimits struct {
	MaxJobs int           // dead_max_jobs, 10 000
	Timeout time.Duration // dead_timeout_in_seconds, 180 days
}

// sendToSet appends the commands that add job to set and, when inflight is
// set, acknowledge it, all inside the caller's MULTI.
func sendAck(c redis.Conn, identity, queue string, raw []byte) error {
	if identity == "" {
		return nil
	}
	return c.Send("LREM", Inflight(identity, queue), -1, raw)
}

// RetryAndAck adds job to the retry set at score at and, for reliable fetch,
// removes the original raw job from the in-flight list, in one MULTI.
// identity is "" for BasicFetch.
func RetryAndAck(c redis.Conn, at time.Time, job []byte, identity, queue string, raw []byte) error {
	if err := c.Send("MULTI"); err != nil {
		return err
	}
	if err := c.Send("ZADD", KeyRetry, Score(at), job); err != nil {
		return err
	}
	if err := sendAck(c, identity, queue, raw); err != nil {
		return err
	}
	_, err := c.Do("EXEC")
	return err
}

// KillAndAck adds job to the dead set, trims it by age and size as Sidekiq's
// send_to_morgue does, and acknowledges the in-flight original, in one MULTI.
func KillAndAck(c redis.Conn, now time.Time, lim DeadLimits, job []byte, identity, queue string, raw []byte) error {
	if err := c.Send("MULTI"); err != nil {
		return err
	}
	if err := sendKill(c, now, lim, job); err != nil {
		return err
	}
	if err := sendAck(c, identity, queue, raw); err != nil {
		return err
	}
	_, err := c.Do("EXEC")
	return err
}

func sendKill(c redis.Conn, now time.Time, lim DeadLimits, job []byte) error {
	if err := c.Send("ZADD", KeyDead, Score(now), job); err != nil {
		return err
	}
	if err := c.Send("ZREMRANGEBYSCORE", KeyDead, "-inf", Score(now.Add(-lim.Timeout))); err != nil {
		return err
	}
	return c.Send("ZREMRANGEBYRANK", KeyDead, 0, -lim.MaxJobs)
}

// Kill adds job to the dead set with trimming (API and Web UI "Kill").
func Kill(c redis.Conn, now time.Time, lim DeadLimits, job []byte) error {
	if err := c.Send("MULTI"); err != nil {
		return err
	}
	if err := sendKill(c, now, lim, job); err != nil {
		return err
	}
	_, err := c.Do("EXEC")
	return err
}

// fetchPrelude starts the fetch scripts. KEYS are the n queues, then with
// reliable fetch their n in-flight lists; ARGV[1] is n. Reliable fetch
// moves each job onto its queue's in-flight list; basic fetch (no
// in-flight keys, Sidekiq's BasicFetch) pops it.
const fetchPrelude = `
local n = tonumber(ARGV[1])
local reliable = #KEYS > n
local out = {}
`

// fetchManyScript takes up to one job per order in one call. Each order
// (comma-separated 1-based queue indexes) is the order in which that job's
// queues are tried, so weighted ordering is drawn per job.
// KEYS, ARGV[1]: fetchPrelude; ARGV[2..]: one order per job.
// returns: {index, job, index, job, ...}; stops at the first job for which
// every queue is empty.
var fetchManyScript = redis.NewScript(-1, fetchPrelude+`
for k = 2, #ARGV do
  local got = false
  for i in string.gmatch(ARGV[k], '%d+') do
    local q = tonumber(i)
    local v
    if reliable then
      v = redis.call('LMOVE', KEYS[q], KEYS[n + q], 'RIGHT', 'LEFT')
    else
      v = redis.call('RPOP', KEYS[q])
    end
    if v then
      out[#out + 1] = q
      out[#out + 1] = v
      got = true
      break
    end
  end
  if not got then break end
end
return out`)

// fetchBulkScript is fetchManyScript when every job has the same order
// (strict ordering, or one queue): it takes as many jobs as each queue
// holds, in that order, with a few commands per queue instead of one per
// job (reliable fetch leaves the in-flight list as one LMOVE per job
// would; basic fetch is one RPOP with a count).
// KEYS, ARGV[1]: fetchPrelude; ARGV[2]: count; ARGV[3]: the order.
// returns: {index, job, index, job, ...}, oldest job first.
var fetchBulkScript = redis.NewScript(-1, fetchPrelude+`
local want = tonumber(ARGV[2])
for i in string.gmatch(ARGV[3], '%d+') do
  if want <= 0 then break end
  local q = tonumber(i)
  local oldestFirst = {}
  if reliable then
    local jobs = redis.call('LRANGE', KEYS[q], -want, -1)
    if #jobs > 0 then
      redis.call('LTRIM', KEYS[q], 0, -#jobs - 1)
      for x = #jobs, 1, -1 do
        oldestFirst[#oldestFirst + 1] = jobs[x]
      end
      redis.call('LPUSH', KEYS[n + q], unpack(oldestFirst))
    end
  else
    oldestFirst = redis.call('RPOP', KEYS[q], want) or {}
  end
  for _, v in ipairs(oldestFirst) do
    out[#out + 1] = q
    out[#out + 1] = v
  end
  want = want - #oldestFirst
end
return out`)

// Fetched is one job moved by FetchMany: the index of its queue.
type Fetched struct {
	Index int
	Job   []byte
}

// FetchMany is one fetch round trip. It first acknowledges acked (removes
// them from identity's in-flight lists, one LREM each, pipelined ahead of
// the script: a plain LREM costs Redis about two thirds of one called from
// Lua), then moves up to len(orders) jobs, each from the first non-empty
// queue of its order (indexes into queues), onto identity's in-flight
// lists, in one script call. identity "" is BasicFetch: jobs are popped and
// acked must be empty. ackedOK reports that every acknowledgement was
// written, whatever became of the fetch.
func FetchMany(c redis.Conn, identity string, queues []string, orders [][]int, acked []AckedJob) (got []Fetched, ackedOK bool, err error) {
	if len(orders) == 0 {
		return nil, false, errors.New("fetch of no jobs")
	}
	if identity == "" && len(acked) > 0 {
		return nil, false, errors.New("basic fetch has nothing to acknowledge")
	}
	script := fetchManyScript
	bulk := allSame(orders) // one order for every job: take them in bulk
	if bulk {
		script = fetchBulkScript
	}
	nkeys := len(queues)
	if identity != "" {
		nkeys *= 2
	}
	args := make([]any, 0, 1+nkeys+3+len(orders))
	args = append(args, nkeys)
	for _, q := range queues {
		args = append(args, Queue(q))
	}
	if identity != "" {
		for _, q := range queues {
			args = append(args, Inflight(identity, q))
		}
	}
	args = append(args, len(queues))
	if bulk {
		args = append(args, len(orders), encodeOrder(orders[0]))
	} else {
		for _, o := range orders {
			args = append(args, encodeOrder(o))
		}
	}
	for _, j := range acked { // before anything is sent
		if !slices.Contains(queues, j.Queue) {
			return nil, false, fmt.Errorf("acknowledge a job of queue %q, not fetched here", j.Queue)
		}
	}
	if err := sendAcks(c, identity, acked); err != nil {
		return nil, false, err
	}
	if err := script.SendHash(c, args...); err != nil {
		return nil, false, err
	}
	if err := c.Flush(); err != nil {
		return nil, false, err
	}
	ackedOK = true
	for range acked {
		if _, err := c.Receive(); err != nil {
			if _, ok := err.(redis.Error); !ok {
				return nil, false, err // the connection broke: nothing more to read
			}
			ackedOK = false
		}
	}
	reply, err := c.Receive()
	if e, ok := err.(redis.Error); ok && strings.HasPrefix(string(e), "NOSCRIPT ") {
		// Redis does not know the script (restarted, or SCRIPT FLUSH).
		reply, err = script.Do(c, args...)
	}
	vals, err := redis.Values(reply, err)
	if err != nil {
		return nil, ackedOK, err
	}
	got = make([]Fetched, 0, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		idx, _ := redis.Int(vals[i], nil)
		job, _ := redis.Bytes(vals[i+1], nil)
		got = append(got, Fetched{Index: idx - 1, Job: job})
	}
	return got, ackedOK, nil
}

func allSame(orders [][]int) bool {
	for _, o := range orders[1:] {
		if !slices.Equal(o, orders[0]) {
			return false
		}
	}
	return true
}

// encodeOrder writes queue indexes as the scripts read them: 1-based,
// comma-separated.
func encodeOrder(o []int) []byte {
	enc := make([]byte, 0, 4*len(o))
	for i, idx := range o {
		if i > 0 {
			enc = append(enc, ',')
		}
		enc = strconv.AppendInt(enc, int64(idx+1), 10)
	}
	return enc
}

// BlockingFetch waits up to timeout for one job: reliable fetch (identity
// set) moves it from the first queue onto the in-flight list (BLMOVE);
// BasicFetch pops from the queues in order (BRPOP). A nil job means the
// wait timed out.
func BlockingFetch(c redis.Conn, identity string, queues []string, timeout time.Duration) (string, []byte, error) {
	if identity == "" {
		return FetchBasic(c, queues, timeout)
	}
	job, err := BlockingFetchReliable(c, identity, queues[0], timeout)
	return queues[0], job, err
}

// AckedJob is one finished job to remove from its in-flight list.
type AckedJob struct {
	Queue string
	Raw   []byte
}

// AckMany removes finished jobs from their in-flight lists in one
// pipelined round trip.
func AckMany(c redis.Conn, identity string, jobs []AckedJob) error {
	if err := sendAcks(c, identity, jobs); err != nil {
		return err
	}
	return receiveAll(c, len(jobs))
}

// fromTail is LREM's count that removes one match searching from the tail,
// boxed once: -1 would be boxed (allocated) on every acknowledgement.
var fromTail any = -1

// sendAcks pipelines one LREM per finished job, searching its in-flight
// list from the tail, where the oldest jobs are, those that finish first:
// a list as long as the running and prefetched jobs is then not scanned
// whole for each job. Each list's key is built once per call, not once per
// job.
func sendAcks(c redis.Conn, identity string, jobs []AckedJob) error {
	if len(jobs) == 0 {
		return nil
	}
	keys := map[string]any{}
	for _, j := range jobs {
		k, ok := keys[j.Queue]
		if !ok {
			k = Inflight(identity, j.Queue)
			keys[j.Queue] = k
		}
		if err := c.Send("LREM", k, fromTail, j.Raw); err != nil {
			return err
		}
	}
	return nil
}
