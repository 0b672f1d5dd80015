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

// RowKey is the ledger field of a row: its number, or its jid when the
// number is unknown.
func RowKey(row int, jid string) string {
	if row > 0 {
		return fmt.Sprintf("%08d", row)
	}
	return "jid-" + jid
}

// Record stores r unless the row already has a result; true if it was new.
func (l Ledger) Record(ctx context.Context, token string, r RowResult) (bool, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return false, err
	}
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return false, fmt.Errorf("ledger %s: %w", token, err)
	}
	defer c.Close()
	n, err := redis.Int(c.Do("HSETNX", rowsKey(token), r.Key, b))
	if err != nil {
		return false, fmt.Errorf("ledger %s row %s: %w", token, r.Key, err)
	}
	return n == 1, nil
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
	_, err = c.Do("EXPIRE", splitKey(token), int(ttl.Seconds()))
	return err
}
