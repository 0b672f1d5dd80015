package fleet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
)

// Redis keys of the fleet, shared by every process that launches workers.
const (
	// SlotsKey is a hash: one field per token worker that counts against
	// the caps (its task ID, or "pending:<id>" while its launch is under
	// way), valued "<token> <unix ms>".
	SlotsKey = contract.FleetSlotsKey
	// WaitingKey is a sorted set of the runs waiting for their first
	// worker, scored by when they first asked: their turn.
	WaitingKey = contract.FleetWaitingKey
	// AskedKey is a hash of when each waiting run last asked (unix ms): a
	// run that stops asking (it ended) leaves the queue.
	AskedKey = contract.FleetAskedKey
)

// acquireScript reserves up to want slots for a run.
//
// KEYS[1] SlotsKey, KEYS[2] WaitingKey, KEYS[3] AskedKey
// ARGV[1] token, ARGV[2] total cap (0: none), ARGV[3] per-run cap,
// ARGV[4] want, ARGV[5] "1" for extra workers of a run that has one, "0"
// for its first, ARGV[6] now (unix ms), ARGV[7] the reservation fields'
// prefix, ARGV[8] how long a waiting run may go without asking (ms).
//
// Returns {granted, ahead}: granted reservations were written as fields
// ARGV[7]..1 to ARGV[7]..granted; ahead is how many runs wait before this
// one when granted is 0 for a first worker. A first worker waits its turn
// (runs ahead of it take the free slots first); extra workers are granted
// only from slots no waiting run needs.
var acquireScript = redis.NewScript(3, `
local token, cap, per, want = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now, stale = tonumber(ARGV[6]), tonumber(ARGV[8])
local asked = redis.call('HGETALL', KEYS[3])
for i = 1, #asked, 2 do
  if tonumber(asked[i+1]) < now - stale then
    redis.call('ZREM', KEYS[2], asked[i])
    redis.call('HDEL', KEYS[3], asked[i])
  end
end
local slots = redis.call('HVALS', KEYS[1])
local total, mine = #slots, 0
for _, v in ipairs(slots) do
  local sp = string.find(v, ' ', 1, true)
  if sp and string.sub(v, 1, sp - 1) == token then mine = mine + 1 end
end
local free = per - mine
local capfree = -1
if cap > 0 then capfree = cap - total end
if ARGV[5] == '0' then
  redis.call('ZADD', KEYS[2], 'NX', now, token)
  redis.call('HSET', KEYS[3], token, now)
  local rank = redis.call('ZRANK', KEYS[2], token)
  if capfree >= 0 and rank >= capfree then return {0, rank} end
  redis.call('ZREM', KEYS[2], token)
  redis.call('HDEL', KEYS[3], token)
  want = 1
elseif capfree >= 0 then
  capfree = capfree - redis.call('ZCARD', KEYS[2])
end
local n = math.min(want, free)
if capfree >= 0 then n = math.min(n, capfree) end
if n <= 0 then return {0, 0} end
for i = 1, n do
  redis.call('HSET', KEYS[1], ARGV[7] .. i, token .. ' ' .. ARGV[6])
end
return {n, 0}
`)

// slot is one field of SlotsKey.
type slot struct {
	field, token string
	at           int64 // unix ms
}

func (s slot) pending() bool { return strings.HasPrefix(s.field, pendingPrefix) }

const pendingPrefix = "pending:"

func (f *Fleet) conn(ctx context.Context) (redis.Conn, error) {
	c, err := f.pool.GetContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("fleet: redis: %w", err)
	}
	return c, nil
}

// acquire runs acquireScript; it returns the reservation fields granted
// and, when none is, how many runs wait ahead.
func (f *Fleet) acquire(ctx context.Context, token string, want int, extra bool) ([]string, int, error) {
	c, err := f.conn(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	prefix := pendingPrefix + newID() + ":"
	ex := "0"
	if extra {
		ex = "1"
	}
	r, err := redis.Int64s(acquireScript.DoContext(ctx, c, SlotsKey, WaitingKey, AskedKey,
		token, f.cfg.MaxWorkers, f.cfg.MaxPerRun, want, ex, f.now().UnixMilli(), prefix, f.cfg.WaitStale.Milliseconds()))
	if err != nil || len(r) != 2 {
		return nil, 0, fmt.Errorf("fleet: acquire for %s: %v", token, errors.Join(err, errors.New("bad answer")))
	}
	fields := make([]string, r[0])
	for i := range fields {
		fields[i] = prefix + strconv.Itoa(i+1)
	}
	return fields, int(r[1]), nil
}

// slots reads every slot.
func (f *Fleet) slots(ctx context.Context) ([]slot, error) {
	c, err := f.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	m, err := redis.StringMap(c.Do("HGETALL", SlotsKey))
	if err != nil {
		return nil, fmt.Errorf("fleet: read slots: %w", err)
	}
	out := make([]slot, 0, len(m))
	for field, v := range m {
		tok, at, _ := strings.Cut(v, " ")
		ms, _ := strconv.ParseInt(at, 10, 64)
		out = append(out, slot{field: field, token: tok, at: ms})
	}
	return out, nil
}

// bind replaces reservation field by the task it launched.
func (f *Fleet) bind(ctx context.Context, field, taskID, token string) error {
	c, err := f.conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	c.Send("MULTI")
	c.Send("HDEL", SlotsKey, field)
	c.Send("HSET", SlotsKey, taskID, token+" "+strconv.FormatInt(f.now().UnixMilli(), 10))
	if _, err := c.Do("EXEC"); err != nil {
		return fmt.Errorf("fleet: bind %s: %w", taskID, err)
	}
	return nil
}

// release frees slots (task IDs or reservations).
func (f *Fleet) release(ctx context.Context, fields ...string) error {
	if len(fields) == 0 {
		return nil
	}
	c, err := f.conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Do("HDEL", redis.Args{SlotsKey}.AddFlat(fields)...); err != nil {
		return fmt.Errorf("fleet: release: %w", err)
	}
	return nil
}

// waitingAhead reports whether token waits for its first worker and how
// many runs wait before it.
func (f *Fleet) waitingAhead(ctx context.Context, token string) (int, bool, error) {
	c, err := f.conn(ctx)
	if err != nil {
		return 0, false, err
	}
	defer c.Close()
	rank, err := redis.Int(c.Do("ZRANK", WaitingKey, token))
	if errors.Is(err, redis.ErrNil) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("fleet: waiting: %w", err)
	}
	return rank, true, nil
}
