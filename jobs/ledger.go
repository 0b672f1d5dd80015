package jobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gomodule/redigo/redis"
	"golang.org/x/sync/errgroup"
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
	File   string `json:"file,omitempty"`  // the row file's storage key; its name only when it is in a pack
	Error  string `json:"error,omitempty"` // why it failed
	// Pack (an object name under rows/<token>/), Offset and Size locate the
	// row file inside a pack (rowpack.go); Pack is empty when the file is
	// an object of its own.
	Pack   string `json:"pack,omitempty"`
	Offset int64  `json:"off,omitzero"`
	Size   int64  `json:"size,omitzero"`
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
	news, lastAt, err := l.RecordBatch(ctx, token, []RowResult{r})
	if err != nil {
		return false, false, err
	}
	return news[0], lastAt == 0, nil
}

// RecordBatch is Record for many rows of one token in one transaction.
// isNew[i] says rs[i] was new; last is the index of the row that completed
// the run, or -1.
func (l Ledger) RecordBatch(ctx context.Context, token string, rs []RowResult) (isNew []bool, last int, err error) {
	last = -1
	if len(rs) == 0 {
		return nil, last, nil
	}
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return nil, last, fmt.Errorf("ledger %s: %w", token, err)
	}
	defer c.Close()
	_ = c.Send("MULTI")
	for _, r := range rs {
		b, err := encodeResult(r)
		if err != nil {
			return nil, last, err
		}
		_ = c.Send("HSETNX", rowsKey(token), r.Key, b)
	}
	_ = c.Send("HLEN", rowsKey(token))
	_ = c.Send("GET", totalKey(token))
	vals, err := redis.Values(c.Do("EXEC"))
	if err != nil || len(vals) != len(rs)+2 {
		return nil, last, fmt.Errorf("ledger %s: record %d rows: %v", token, len(rs), err)
	}
	isNew = make([]bool, len(rs))
	for i := range rs {
		n, _ := redis.Int(vals[i], nil)
		isNew[i] = n == 1
		if isNew[i] {
			last = i
		}
	}
	ended, _ := redis.Int(vals[len(rs)], nil)
	total, terr := redis.Int(vals[len(rs)+1], nil)
	if last >= 0 && (terr != nil || ended < total) {
		last = -1
	}
	return isNew, last, nil
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

// ledgerChunk is how many entries one HMGET or HSCAN step reads.
const ledgerChunk = 1000

// Each calls fn for every recorded row without holding the ledger in
// memory: rows 1..total in order (a row with no result is passed as
// missing, with only Row and Key set), then the rows known only by jid
// (pushed by Ruby, without a row number), in no particular order.
func (l Ledger) Each(ctx context.Context, token string, total int, fn func(r RowResult, missing bool) error) error {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return fmt.Errorf("ledger %s: %w", token, err)
	}
	defer c.Close()
	// Numbered rows are read and decoded a chunk ahead in a goroutine of
	// their own, beside fn's work (the finalizer zipping): at a million
	// rows the finalizer is otherwise one core's work end to end.
	type entry struct {
		r       RowResult
		missing bool
	}
	chunks := make(chan []entry, 2)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(chunks)
		args := make([]any, 0, ledgerChunk+1)
		for from := 1; from <= total; from += ledgerChunk {
			to := min(from+ledgerChunk-1, total)
			args = append(args[:0], rowsKey(token))
			for n := from; n <= to; n++ {
				args = append(args, RowKey(n, ""))
			}
			vals, err := redis.ByteSlices(c.Do("HMGET", args...))
			if err != nil {
				return fmt.Errorf("ledger %s rows %d-%d: %w", token, from, to, err)
			}
			chunk := make([]entry, len(vals))
			for i, v := range vals {
				n := from + i
				if v == nil {
					chunk[i] = entry{r: RowResult{Row: n, Key: RowKey(n, "")}, missing: true}
					continue
				}
				chunk[i].r = decodeResult(RowKey(n, ""), v)
				chunk[i].r.Row = n
			}
			select {
			case chunks <- chunk:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	g.Go(func() error {
		for chunk := range chunks {
			for _, e := range chunk {
				if err := fn(e.r, e.missing); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	cursor := "0"
	for {
		vals, err := redis.Values(c.Do("HSCAN", rowsKey(token), cursor, "MATCH", "jid-*", "COUNT", ledgerChunk))
		if err != nil || len(vals) != 2 {
			return fmt.Errorf("ledger %s: scan: %v", token, err)
		}
		cursor, _ = redis.String(vals[0], nil)
		kv, _ := redis.ByteSlices(vals[1], nil)
		for i := 0; i+1 < len(kv); i += 2 {
			if err := fn(decodeResult(string(kv[i]), kv[i+1]), false); err != nil {
				return err
			}
		}
		if cursor == "0" {
			return nil
		}
	}
}

// Ledger entries are encoded with json/v2, which is several times quicker
// than encoding/json for a small struct; there is one per row each way.
// Error texts may hold invalid UTF-8, which encoding/json would replace and
// which is kept as it is here.
func encodeResult(r RowResult) ([]byte, error) {
	return jsonv2.Marshal(r, jsontext.AllowInvalidUTF8(true))
}

func decodeResult(key string, v []byte) RowResult {
	var r RowResult
	if err := jsonv2.Unmarshal(v, &r, jsontext.AllowInvalidUTF8(true)); err != nil {
		return RowResult{Key: key, Status: "failed", Error: "unreadable ledger entry"}
	}
	return r
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

// Recorded reports, for each row number, whether the ledger holds its
// result.
func (l Ledger) Recorded(ctx context.Context, token string, rows []int) ([]bool, error) {
	out := make([]bool, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", token, err)
	}
	defer c.Close()
	args := make([]any, 0, len(rows)+1)
	args = append(args, rowsKey(token))
	for _, n := range rows {
		args = append(args, RowKey(n, ""))
	}
	vals, err := redis.Values(c.Do("HMGET", args...))
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", token, err)
	}
	for i, v := range vals {
		out[i] = v != nil
	}
	return out, nil
}

// Unrecorded lists the rows from..to that have no result, reading the
// ledger in chunks; it stops after limit rows.
func (l Ledger) Unrecorded(ctx context.Context, token string, from, to, limit int) ([]int, error) {
	var out []int
	for lo := from; lo <= to && len(out) < limit; lo += ledgerChunk {
		hi := min(lo+ledgerChunk-1, to)
		nums := make([]int, 0, hi-lo+1)
		for n := lo; n <= hi; n++ {
			nums = append(nums, n)
		}
		have, err := l.Recorded(ctx, token, nums)
		if err != nil {
			return nil, err
		}
		for i, ok := range have {
			if !ok && len(out) < limit {
				out = append(out, nums[i])
			}
		}
	}
	return out, nil
}

// HasTotal reports whether the split recorded the run's total in Redis:
// false while it splits, and after Redis lost its data.
func (l Ledger) HasTotal(ctx context.Context, token string) (int, bool, error) {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return 0, false, err
	}
	defer c.Close()
	n, err := redis.Int(c.Do("GET", totalKey(token)))
	if errors.Is(err, redis.ErrNil) {
		return 0, false, nil
	}
	return n, err == nil, err
}
