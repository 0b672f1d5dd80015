package jobs

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gomodule/redigo/redis"
	"golang.org/x/sync/errgroup"
)

// Ledger records how each row of a report ended, once per row, in Redis.
// Its size per row is fixed and small, so a million-row run costs Redis
// about 16 MB, not a hash entry per row:
//
//	pallarel:ledger:<token>  STRING, 16 bytes per numbered row at (row-1)*16:
//	                         status, flags, pack id, offset, size (slotSize)
//	pallarel:packs:<token>   HASH "seq" → last pack id, "n:<name>" → id, "i:<id>" → name
//	pallarel:errors:<token>  HASH row → why it failed (failed rows only)
//	pallarel:names:<token>   HASH row → file name, for rows whose pack has no
//	                         name header (rows restored by a retry)
//	pallarel:count:<token>   STRING, numbered rows recorded
//	pallarel:rows:<token>    HASH jid-<jid> → JSON RowResult, for rows without
//	                         a number (pushed by Ruby)
//
// A slot is written only while it is empty (in one script), so a row job
// that runs twice is counted once, and the finalizer knows exactly which
// rows ended and how.
type Ledger struct {
	Pool *redis.Pool
}

// RowResult is how one row ended.
type RowResult struct {
	Row    int    `json:"row"`             // 1-based data row number, 0 if unknown (Ruby-pushed row)
	Key    string `json:"key"`             // row key: row number, or the jid
	Status string `json:"status"`          // "done" or "failed"
	File   string `json:"file,omitempty"`  // the row file's name (its key when stored on its own)
	Error  string `json:"error,omitempty"` // why it failed
	// Pack (an object name under rows/<token>/), Offset and Size locate the
	// row inside a pack (rowpack.go); Pack is empty when the file is an
	// object of its own. NameInPack says the bytes there start with the
	// file's name (packBlob) rather than being the file alone.
	Pack       string `json:"pack,omitempty"`
	Offset     int64  `json:"off,omitzero"`
	Size       int64  `json:"size,omitzero"`
	NameInPack bool   `json:"nh,omitzero"`
}

func rowsKey(token string) string   { return "pallarel:rows:" + token }
func splitKey(token string) string  { return "pallarel:split:" + token }
func totalKey(token string) string  { return "pallarel:total:" + token }
func slotsKey(token string) string  { return "pallarel:ledger:" + token }
func packsKey(token string) string  { return "pallarel:packs:" + token }
func errorsKey(token string) string { return "pallarel:errors:" + token }
func namesKey(token string) string  { return "pallarel:names:" + token }
func countKey(token string) string  { return "pallarel:count:" + token }

// ledgerKeys are every key of a token's ledger.
func ledgerKeys(token string) []string {
	return []string{slotsKey(token), packsKey(token), errorsKey(token), namesKey(token), countKey(token),
		rowsKey(token), totalKey(token), splitKey(token)}
}

// A slot: status byte, flags byte, pack id (uint32), offset (uint48), size
// (uint32), big-endian.
const slotSize = 16

const (
	slotDone   = 1
	slotFailed = 2

	flagNameInPack = 1 << 0 // the pack bytes start with the file name
	flagSolo       = 1 << 1 // the row file is an object of its own, named by its pack
	flagNameHash   = 1 << 2 // the file name is in pallarel:names
)

// RowKey is the ledger key of a row: its number, or its jid when the
// number is unknown.
func RowKey(row int, jid string) string {
	if row > 0 {
		return fmt.Sprintf("%08d", row)
	}
	return "jid-" + jid
}

// recordScript records row results whose slot is still empty.
// KEYS: slots, packs, errors, names, count, rows (jid hash), total.
// ARGV: n, then per row 8 values: row, status byte, flags, pack name ("" for
// none), offset, size, error, name ("" unless flagNameHash); a jid row
// (row 0) passes its key as "pack name" and its JSON as "error".
// Returns: per row 1 if new, else 0; then the count of rows recorded and
// the total ("" while the split runs).
var recordScript = redis.NewScript(7, `
local function be(v, nbytes)
  local t = {}
  for k = nbytes, 1, -1 do t[k] = v % 256; v = math.floor(v / 256) end
  return string.char(unpack(t))
end
local n = tonumber(ARGV[1])
local out = {}
for i = 0, n - 1 do
  local b = 2 + i * 8
  local row = tonumber(ARGV[b])
  if row == 0 then
    out[i + 1] = redis.call('HSETNX', KEYS[6], ARGV[b + 3], ARGV[b + 6])
  else
    local at = (row - 1) * 16
    local cur = redis.call('GETRANGE', KEYS[1], at, at)
    if cur ~= '' and string.byte(cur) ~= 0 then
      out[i + 1] = 0
    else
      local pid = 0
      local pname = ARGV[b + 3]
      if pname ~= '' then
        pid = tonumber(redis.call('HGET', KEYS[2], 'n:' .. pname) or '0')
        if pid == 0 then
          pid = redis.call('HINCRBY', KEYS[2], 'seq', 1)
          redis.call('HSET', KEYS[2], 'n:' .. pname, pid, 'i:' .. pid, pname)
        end
      end
      local off = tonumber(ARGV[b + 4])
      local size = tonumber(ARGV[b + 5])
      local slot = string.char(tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])) ..
        be(pid, 4) .. be(off, 6) .. be(size, 4)
      redis.call('SETRANGE', KEYS[1], at, slot)
      if ARGV[b + 6] ~= '' then redis.call('HSET', KEYS[3], row, ARGV[b + 6]) end
      if ARGV[b + 7] ~= '' then redis.call('HSET', KEYS[4], row, ARGV[b + 7]) end
      redis.call('INCR', KEYS[5])
      out[i + 1] = 1
    end
  end
end
local count = tonumber(redis.call('GET', KEYS[5]) or '0') + redis.call('HLEN', KEYS[6])
out[n + 1] = count
out[n + 2] = redis.call('GET', KEYS[7]) or ''
return out`)

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

// slotArgs are recordScript's 8 values for r.
func slotArgs(r RowResult) ([]any, error) {
	if r.Row <= 0 {
		b, err := encodeResult(r)
		if err != nil {
			return nil, err
		}
		return []any{0, 0, 0, r.Key, 0, 0, b, ""}, nil
	}
	status := slotDone
	if r.Status != "done" {
		status = slotFailed
	}
	var flags int
	pack, name := r.Pack, ""
	switch {
	case r.Status != "done":
	case pack != "" && r.NameInPack:
		flags |= flagNameInPack
	case pack != "":
		flags |= flagNameHash
		name = r.File
	case r.File != "":
		// An object of its own: its key is the pack, under rows/<token>/.
		flags |= flagSolo
		pack = path.Base(r.File)
	}
	errText := ""
	if status == slotFailed {
		errText = cmp.Or(r.Error, "failed")
	}
	return []any{r.Row, status, flags, pack, r.Offset, r.Size, errText, name}, nil
}

// RecordBatch is Record for many rows of one token in one script call.
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
	args := make([]any, 0, 8+1+8*len(rs))
	args = append(args, slotsKey(token), packsKey(token), errorsKey(token), namesKey(token), countKey(token),
		rowsKey(token), totalKey(token), len(rs))
	for _, r := range rs {
		a, err := slotArgs(r)
		if err != nil {
			return nil, last, err
		}
		args = append(args, a...)
	}
	vals, err := redis.Values(recordScript.Do(c, args...))
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
	_ = c.Send("GET", countKey(token))
	_ = c.Send("HLEN", rowsKey(token))
	if err := c.Flush(); err != nil {
		return 0, err
	}
	n, err := redis.Int(c.Receive())
	if errors.Is(err, redis.ErrNil) {
		n, err = 0, nil
	}
	if err != nil {
		return 0, err
	}
	j, err := redis.Int(c.Receive())
	return n + j, err
}

// ledgerChunk is how many rows one read of the ledger covers.
const ledgerChunk = 1000

// slotReader decodes slots into RowResults, looking pack names, errors and
// names up a chunk at a time.
type slotReader struct {
	c     redis.Conn
	token string
	packs map[uint32]string
}

type slot struct {
	status, flags byte
	pack          uint32
	off           int64
	size          int64
}

func decodeSlot(b []byte) slot {
	return slot{
		status: b[0], flags: b[1],
		pack: binary.BigEndian.Uint32(b[2:6]),
		off:  int64(binary.BigEndian.Uint16(b[6:8]))<<32 | int64(binary.BigEndian.Uint32(b[8:12])),
		size: int64(binary.BigEndian.Uint32(b[12:16])),
	}
}

// rows reads rows from..to (inclusive); a missing row has ok false.
func (sr *slotReader) rows(from, to int) (rs []RowResult, ok []bool, err error) {
	raw, err := redis.Bytes(sr.c.Do("GETRANGE", slotsKey(sr.token), (from-1)*slotSize, to*slotSize-1))
	if err != nil && !errors.Is(err, redis.ErrNil) {
		return nil, nil, fmt.Errorf("ledger %s rows %d-%d: %w", sr.token, from, to, err)
	}
	n := to - from + 1
	rs, ok = make([]RowResult, n), make([]bool, n)
	var errRows, nameRows []any
	var needPacks []any
	for i := range n {
		row := from + i
		rs[i] = RowResult{Row: row, Key: RowKey(row, "")}
		if (i+1)*slotSize > len(raw) {
			continue
		}
		s := decodeSlot(raw[i*slotSize : (i+1)*slotSize])
		switch s.status {
		case 0:
			continue
		case slotDone:
			rs[i].Status = "done"
		case slotFailed:
			rs[i].Status = "failed"
			errRows = append(errRows, row)
		default:
			rs[i].Status, rs[i].Error = "failed", "unreadable ledger entry"
		}
		ok[i] = true
		if s.pack != 0 {
			if _, known := sr.packs[s.pack]; !known {
				needPacks = append(needPacks, "i:"+strconv.FormatUint(uint64(s.pack), 10))
			}
		}
		rs[i].Offset, rs[i].Size = s.off, s.size
		rs[i].NameInPack = s.flags&flagNameInPack != 0
		if s.flags&flagNameHash != 0 {
			nameRows = append(nameRows, row)
		}
		rs[i].Pack = strconv.FormatUint(uint64(s.pack), 10) // resolved below
		if s.flags&flagSolo != 0 {
			rs[i].Pack = "solo:" + rs[i].Pack
		}
	}
	if len(needPacks) > 0 {
		names, err := redis.Strings(sr.c.Do("HMGET", append([]any{packsKey(sr.token)}, needPacks...)...))
		if err != nil {
			return nil, nil, fmt.Errorf("ledger %s packs: %w", sr.token, err)
		}
		for i, f := range needPacks {
			id, _ := strconv.ParseUint(f.(string)[2:], 10, 32)
			sr.packs[uint32(id)] = names[i]
		}
	}
	errs, err := sr.hashValues(errorsKey(sr.token), errRows)
	if err != nil {
		return nil, nil, err
	}
	names, err := sr.hashValues(namesKey(sr.token), nameRows)
	if err != nil {
		return nil, nil, err
	}
	for i := range rs {
		if !ok[i] {
			continue
		}
		r := &rs[i]
		if e, has := errs[r.Row]; has {
			r.Error = e
		}
		id, solo := strings.CutPrefix(r.Pack, "solo:")
		pid, _ := strconv.ParseUint(id, 10, 32)
		r.Pack = ""
		if pid == 0 {
			continue
		}
		name := sr.packs[uint32(pid)]
		switch {
		case solo:
			r.File = RowKeyPrefix(sr.token) + name
		default:
			r.Pack = name
			r.File = names[r.Row]
		}
	}
	return rs, ok, nil
}

func (sr *slotReader) hashValues(key string, rows []any) (map[int]string, error) {
	out := map[int]string{}
	if len(rows) == 0 {
		return out, nil
	}
	vals, err := redis.Strings(sr.c.Do("HMGET", append([]any{key}, rows...)...))
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", sr.token, err)
	}
	for i, v := range vals {
		out[rows[i].(int)] = v
	}
	return out, nil
}

// Each calls fn for every recorded row without holding the ledger in
// memory: rows 1..total in order (a row with no result is passed as
// missing, with only Row and Key set), then the rows known only by jid
// (pushed by Ruby), in no particular order.
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
		sr := &slotReader{c: c, token: token, packs: map[uint32]string{}}
		for from := 1; from <= total; from += ledgerChunk {
			to := min(from+ledgerChunk-1, total)
			rs, ok, err := sr.rows(from, to)
			if err != nil {
				return err
			}
			chunk := make([]entry, len(rs))
			for i := range rs {
				chunk[i] = entry{r: rs[i], missing: !ok[i]}
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
	for _, k := range ledgerKeys(token) {
		_ = c.Send("EXPIRE", k, int(ttl.Seconds()))
	}
	_, err = c.Do("")
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
	lo, hi := slices.Min(rows), slices.Max(rows)
	if lo < 1 {
		return nil, fmt.Errorf("ledger %s: row %d has no slot", token, lo)
	}
	raw, err := redis.Bytes(c.Do("GETRANGE", slotsKey(token), (lo-1)*slotSize, hi*slotSize-1))
	if err != nil && !errors.Is(err, redis.ErrNil) {
		return nil, fmt.Errorf("ledger %s: %w", token, err)
	}
	for i, n := range rows {
		at := (n - lo) * slotSize
		out[i] = at < len(raw) && raw[at] != 0
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
