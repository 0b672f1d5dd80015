package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Ledger records how each row of a report ended, once per row, in Redis:
// HASH pallarel:rows:<token>, field = row key, value = JSON RowResult.
// HSETNX makes the record idempotent, so a row job that runs twice (after a
// crash, or a retry after its file was written) is counted once, and the
// finalizer knows exactly which rows ended and how.
type Ledger struct {
	Pool *redis.Pool
}

// RowResult is how one row ended.
type RowResult struct {
	Row    int    `json:"row"`             // 1-based data row number, 0 if unknown (Ruby-pushed row)
	Key    string `json:"key"`             // ledger field: row number, or the jid
	Status string `json:"status"`          // "done" or "failed"
	File   string `json:"file,omitempty"`  // storage key of the row's file
	Error  string `json:"error,omitempty"` // why it failed
}

func rowsKey(token string) string  { return "pallarel:rows:" + token }
func splitKey(token string) string { return "pallarel:split:" + token }
func totalKey(token string) string { return "pallarel:total:" + token }

// RowKey is the ledger field of a row: its number, or its jid when the
// number is unknown.
func RowKey(row int, jid string) string {
	if row > 0 {
		return fmt.Sprintf("%08d", row)
	}
	return "jid-" + jid
}

// Record stores r unless the row already has a result. isNew says it was
// new; last says it was the row that completed the run (the split has
// recorded the total and every row now has a result), so the caller can
// finalize at once instead of waiting for the next poll.
func (l Ledger) Record(ctx context.Context, token string, r RowResult) (isNew, last bool, err error) {
	b, err := json.Marshal(r)
	if err != nil {
		return false, false, err
	}
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return false, false, fmt.Errorf("ledger %s: %w", token, err)
	}
	defer c.Close()
	_ = c.Send("MULTI")
	_ = c.Send("HSETNX", rowsKey(token), r.Key, b)
	_ = c.Send("HLEN", rowsKey(token))
	_ = c.Send("GET", totalKey(token))
	vals, err := redis.Values(c.Do("EXEC"))
	if err != nil || len(vals) != 3 {
		return false, false, fmt.Errorf("ledger %s row %s: %v", token, r.Key, err)
	}
	n, _ := redis.Int(vals[0], nil)
	ended, _ := redis.Int(vals[1], nil)
	total, terr := redis.Int(vals[2], nil)
	return n == 1, n == 1 && terr == nil && ended >= total, nil
}

// SetTotal records the number of data rows once the split has pushed them
// all.
func (l Ledger) SetTotal(ctx context.Context, token string, total int) error {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Do("SET", totalKey(token), total)
	return err
}

// Count is the number of rows that ended.
func (l Ledger) Count(ctx context.Context, token string) (int, error) {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return redis.Int(c.Do("HLEN", rowsKey(token)))
}

// Results lists every recorded row, by key.
func (l Ledger) Results(ctx context.Context, token string) ([]RowResult, error) {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	m, err := redis.StringMap(c.Do("HGETALL", rowsKey(token)))
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", token, err)
	}
	out := make([]RowResult, 0, len(m))
	for k, v := range m {
		var r RowResult
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			r = RowResult{Key: k, Status: "failed", Error: "unreadable ledger entry"}
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Key < out[k].Key })
	return out, nil
}

// SplitProgress is how many data rows the split has pushed for token.
func (l Ledger) SplitProgress(ctx context.Context, token string) (int, error) {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	n, err := redis.Int(c.Do("GET", splitKey(token)))
	if err == redis.ErrNil {
		return 0, nil
	}
	return n, err
}

// SetSplitProgress records that rows up to n were pushed.
func (l Ledger) SetSplitProgress(ctx context.Context, token string, n int) error {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Do("SET", splitKey(token), strconv.Itoa(n))
	return err
}

// Expire lets a finished token's records go after ttl.
func (l Ledger) Expire(ctx context.Context, token string, ttl time.Duration) error {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.Send("EXPIRE", rowsKey(token), int(ttl.Seconds()))
	_ = c.Send("EXPIRE", totalKey(token), int(ttl.Seconds()))
	_, err = c.Do("EXPIRE", splitKey(token), int(ttl.Seconds()))
	return err
}
