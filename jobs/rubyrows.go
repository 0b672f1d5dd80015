package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/sidekiq"
)

// Rows a Ruby split pushed carry no row number: the app's SplitCsvJob
// pushes row.to_h and nothing else. What the pushed jobs still tell is
// their order: the split pushes them one by one in CSV order (LPUSH), so
// the queue's list, and the in-flight lists a worker fetched them onto,
// hold them in that order. Go numbers them from there the first time it
// meets one: a census of the token's queue and in-flight lists, in one
// script, numbers every row job without a number in the order it was
// pushed, continuing from the numbers already given.
//
// What cannot be known: which rows a Ruby worker fetched or ran before the
// census (they are nowhere to be seen: the numbering starts after as many
// rows as the database counts ended, which is right only when those were
// the first ones, as a Ruby worker fetches them in order), the order across several
// processes' in-flight lists (merged by created_at, which Sidekiq 8 gives
// in milliseconds), and a row's number if Ruby pushed it twice.

// orderKey numbers a Ruby split's rows: jid → row, "#" → the last number.
func orderKey(token string) string { return contract.OrderKey(token) }

// censusScript numbers the unnumbered row jobs waiting for a queue.
// KEYS: order hash, queue list, in-flight registry set. ARGV: queue, the
// asking job's jid, the row class, the rows ended before the first census
// (a Ruby worker ran the first rows). Returns the asking job's number.
var censusScript = redis.NewScript(3, `
local n = tonumber(redis.call('HGET', KEYS[1], '#') or ARGV[4])
local function jid_of(p)
  if not string.find(p, ARGV[3], 1, true) or string.find(p, '"pallarel_row"', 1, true) then return nil end
  -- the payload's own jid follows args (a CSV column may be named jid)
  local jid
  for j in string.gmatch(p, '"jid":"([%w]+)"') do jid = j end
  return jid
end
local function give(jid)
  if jid and redis.call('HSETNX', KEYS[1], jid, n + 1) == 1 then n = n + 1 end
end
-- Fetched first: the in-flight lists, oldest at the right end; across
-- processes merged by created_at.
local fetched = {}
local suffix = '|' .. ARGV[1]
for _, m in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if string.sub(m, -#suffix) == suffix then
    local items = redis.call('LRANGE', 'pallarel:inflight|' .. m, 0, -1)
    for i = #items, 1, -1 do
      local jid = jid_of(items[i])
      if jid then
        local at = 0
        for a in string.gmatch(items[i], '"created_at":([%d%.]+)') do at = tonumber(a) end
        if at < 100000000000 then at = at * 1000 end
        table.insert(fetched, {at, #fetched, jid})
      end
    end
  end
end
table.sort(fetched, function(a, b) if a[1] ~= b[1] then return a[1] < b[1] end return a[2] < b[2] end)
for _, f in ipairs(fetched) do give(f[3]) end
local items = redis.call('LRANGE', KEYS[2], 0, -1)
for i = #items, 1, -1 do give(jid_of(items[i])) end
give(ARGV[2])
redis.call('HSET', KEYS[1], '#', n)
return redis.call('HGET', KEYS[1], ARGV[2])`)

// rubyRowNumber gives the row number of a row job a Ruby split pushed
// (one without pallarel_row), numbering the run's waiting rows in push
// order the first time one of them is met.
func (p *Pipeline) rubyRowNumber(ctx context.Context, token, queue, jid string) (int, error) {
	c, err := p.d.Pool.GetContext(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	n, err := redis.Int(c.Do("HGET", orderKey(token), jid))
	if err == nil {
		return n, nil
	}
	if !errors.Is(err, redis.ErrNil) {
		return 0, fmt.Errorf("row number of %s: %w", jid, err)
	}
	// Rows a Ruby worker ended before Go met the run came first.
	before := 0
	if st, err := p.d.DB.StatusByToken(ctx, token); err == nil {
		before = st.DoneCount + st.FailedCount
	}
	n, err = redis.Int(censusScript.Do(c, orderKey(token), "queue:"+queue, sidekiq.InflightIndexKey,
		queue, jid, `"class":"`+contract.Row.Name+`"`, before))
	if err != nil {
		return 0, fmt.Errorf("number the rows of %s: %w", token, err)
	}
	// Rows that ended before Go met a Ruby split ran on a Ruby worker: the
	// run's books are Ruby's from now on, whether or not a supervisor pass
	// saw that worker alive (a short-lived one can start and stop between
	// two passes, and then the finalizer waited for ever).
	if before > 0 {
		why := fmt.Sprintf("the database counted %d ended rows of a Ruby split before Go ran one", before)
		if err := p.keepRubyBooks(ctx, token, why); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// knownRubyRowNumber is the number rubyRowNumber gave jid, or 0.
func (p *Pipeline) knownRubyRowNumber(ctx context.Context, token, jid string) int {
	c, err := p.d.Pool.GetContext(ctx)
	if err != nil {
		return 0
	}
	defer c.Close()
	n, _ := redis.Int(c.Do("HGET", orderKey(token), jid))
	return n
}
