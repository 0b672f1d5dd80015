package ledger

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
)

// The ledger's part in a retry of failed rows and in the failed-row list of
// the status page. A retry rebuilds the ledger from the run's ZIP (whose
// manifest is the truth once a run has ended): Reset (a new generation,
// so no frame of the first run counts), then commits of the rows it keeps
// (their files back in frames), leaving out the failed rows so they can be
// recorded again.

// Reset forgets every row result of token (bitmaps, generation, kept
// errors, count and the rows known by jid) and keeps the split and total
// records (undoing Expire), for a retry that rebuilds the ledger with
// RecordBatch.
func (l Ledger) Reset(ctx context.Context, token string) error {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return fmt.Errorf("ledger %s: %w", token, err)
	}
	defer c.Close()
	_ = c.Send("MULTI")
	_ = c.Send("DEL", redis.Args{}.AddFlat(resultKeys(token))...)
	_ = c.Send("PERSIST", contract.TotalKey(token))
	_ = c.Send("PERSIST", contract.SplitKey(token))
	if _, err := c.Do("EXEC"); err != nil {
		return fmt.Errorf("ledger %s: reset: %w", token, err)
	}
	return nil
}

// cleanedUp reports whether the finalizer has finished its cleanup of
// token: Expire is its last step (after the row files are deleted), so the
// ledger's keys have a TTL or are gone.
func (l Ledger) CleanedUp(ctx context.Context, token string) (bool, error) {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close()
	ttl, err := redis.Int(c.Do("PTTL", contract.TotalKey(token)))
	return ttl != -1, err
}

// lockRetry takes token's retry lock for ttl; false when another retry
// holds it.
func (l Ledger) LockRetry(ctx context.Context, token string, ttl time.Duration) (bool, error) {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close()
	_, err = redis.String(c.Do("SET", contract.RetryLockKey(token), "1", "NX", "PX", ttl.Milliseconds()))
	if errors.Is(err, redis.ErrNil) {
		return false, nil
	}
	return err == nil, err
}

func (l Ledger) UnlockRetry(ctx context.Context, token string) {
	if c, err := l.Pool.GetContext(ctx); err == nil {
		_, _ = c.Do("DEL", contract.RetryLockKey(token))
		c.Close()
	}
}

// failedJidScan picks the failed entries out of one HSCAN step of the
// rows known by jid, on the Redis side.
//
// KEYS[1] the jid hash; ARGV[1] cursor, ARGV[2] count.
// Returns {next cursor, {field, value, ...}} of the failed entries.
var failedJidScan = redis.NewScript(1, `
local r = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local out = {}
local kv = r[2]
for i = 1, #kv, 2 do
  if string.find(kv[i+1], '"status":"failed"', 1, true) then
    out[#out+1] = kv[i]
    out[#out+1] = kv[i+1]
  end
end
return {r[1], out}
`)

// Failed returns the failed rows of token whose reason Redis keeps (the
// first errorsKept numbered ones, then those known only by jid), ordered
// by row number (rows known only by jid last), and how many rows failed in
// all, which may be more.
func (l Ledger) Failed(ctx context.Context, token string) ([]RowResult, int, error) {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("ledger %s: %w", token, err)
	}
	defer c.Close()
	var out []RowResult
	scan := func(step func(cursor string) ([]any, error), add func(k string, v []byte)) error {
		cursor := "0"
		for {
			vals, err := step(cursor)
			if err != nil || len(vals) != 2 {
				return fmt.Errorf("ledger %s: failed rows: %w", token, cmp.Or(err, errShortReply))
			}
			cursor, _ = redis.String(vals[0], nil)
			kv, _ := redis.ByteSlices(vals[1], nil)
			for i := 0; i+1 < len(kv); i += 2 {
				add(string(kv[i]), kv[i+1])
			}
			if cursor == "0" {
				return nil
			}
		}
	}
	err = scan(func(cursor string) ([]any, error) {
		return redis.Values(c.Do("HSCAN", contract.ErrorsKey(token), cursor, "COUNT", ledgerChunk))
	}, func(k string, v []byte) {
		n, _ := strconv.Atoi(k)
		out = append(out, RowResult{Row: n, Key: RowKey(n, ""), Status: "failed", Error: string(v)})
	})
	numbered := len(out)
	if err == nil {
		err = scan(func(cursor string) ([]any, error) {
			return redis.Values(failedJidScan.Do(c, contract.RowsKey(token), cursor, ledgerChunk))
		}, func(k string, v []byte) {
			out = append(out, decodeResult(k, v))
		})
	}
	if err != nil {
		return nil, 0, err
	}
	total, err := redis.Int(c.Do("BITCOUNT", contract.FailedKey(token)))
	if err != nil {
		return nil, 0, fmt.Errorf("ledger %s: failed rows: %w", token, cmp.Or(err, errShortReply))
	}
	sortRows(out)
	return out, max(total, numbered) + len(out) - numbered, nil
}

func sortRows(rs []RowResult) {
	sort.Slice(rs, func(i, k int) bool {
		a, b := rs[i].Row, rs[k].Row
		if (a == 0) != (b == 0) {
			return b == 0
		}
		if a != b {
			return a < b
		}
		return rs[i].Key < rs[k].Key
	})
}
