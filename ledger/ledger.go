package ledger

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/storage"
)

// Ledger records how each row of a report ended, once per row. Redis
// keeps bits, not entries: its memory per run is flat in the row count
// (a million rows cost about 250 KB), while the index of every row (where
// its file is, its name, why it failed) lives in storage, in the frame of
// the commit that stored the row (ledger_frames.go):
//
//	pallarel:recorded:<token> STRING bitmap, bit n set: row n is recorded
//	pallarel:failed:<token>   STRING bitmap, bit n set: row n failed
//	pallarel:commits:<token>  STRING bitmap, bit k set: commit k was recorded
//	pallarel:packs:<token>    HASH "gen" → this ledger's generation (random),
//	                          "seq" → the last commit id handed out
//	pallarel:errors:<token>   HASH row → why it failed, for the first
//	                          errorsKept failed rows (the live list; the
//	                          full reasons are in the frames)
//	pallarel:count:<token>    STRING, numbered rows recorded
//	pallarel:rows:<token>     HASH jid-<jid> → JSON RowResult, for rows without
//	                          a number (pushed by Ruby)
//
// A row job's result is written to storage first, in a frame naming its
// ledger generation and a commit id reserved beforehand, then recorded by
// one script that sets the commit's bit and the row's bit only while it is
// clear. So a row that runs twice is counted once; its status is the one
// of the first copy recorded (the bitmaps); a frame written but never
// recorded (its process died, or Redis failed) is ignored, since its
// commit bit stays clear. The finalizer walks the frames once to find,
// for each row, a recorded commit holding it with the recorded status
// (the lowest such commit id), and keeps 4 bytes a row and 16 a commit
// while it zips.
//
// Redis losing the ledger starts a new generation: frames of the lost
// one are ignored, a commit reserved in it is refused (the row job runs
// again), and the run supervisor rebuilds the run from the stored upload.
// Commit ids are reserved in blocks (a round trip per commitIDBlock
// commits) rather than allocated by the recording script: a frame must
// carry its id before it is stored, and keeping an id → object entry per
// commit in Redis would grow with the rows again.
type Ledger struct {
	Pool *redis.Pool
	// Store holds the commit frames. Without one (tools and tests that
	// only record) rows are recorded in Redis alone: Each reports their
	// status and, for failed rows, the reason kept in Redis.
	Store storage.Store
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

// resultKeys are the keys of a token's row results (what Reset forgets).
func resultKeys(token string) []string {
	return []string{contract.RecordedKey(token), contract.FailedKey(token), contract.CommitsKey(token), contract.PacksKey(token), contract.ErrorsKey(token),
		contract.CountKey(token), contract.RowsKey(token)}
}

// Keys are every key of a token's ledger, for a caller that drops a run's
// Redis state whole.
func Keys(token string) []string { return ledgerKeys(token) }

// ledgerKeys are every key of a token's ledger.
func ledgerKeys(token string) []string {
	return append(append(resultKeys(token), contract.TotalKey(token), contract.SplitKey(token), contract.BooksKey(token), contract.OrderKey(token)), contract.LegacyLedgerKeys(token)...)
}

// dropLegacyScript forgets a ledger of the older layout, so the run is
// rebuilt from its stored upload as after Redis lost its ledger: the rows
// recorded in the old layout run again (their results are in packs this
// version cannot index), rows recorded since in this layout stay.
// KEYS: legacy ledger, legacy names, errors, split, total, recorded, count.
// Returns 1 when there was an old ledger, else 0.
var dropLegacyScript = redis.NewScript(7, `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('SET', KEYS[7], redis.call('BITCOUNT', KEYS[6]))
return 1`)

// dropLegacy forgets token's ledger if an older Pallarel wrote it (a run
// under way across an upgrade), and reports whether it did.
func (l Ledger) DropLegacy(ctx context.Context, token string) (bool, error) {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close()
	old := contract.LegacyLedgerKeys(token)
	n, err := redis.Int(dropLegacyScript.Do(c, old[0], old[1], contract.ErrorsKey(token), contract.SplitKey(token), contract.TotalKey(token),
		contract.RecordedKey(token), contract.CountKey(token)))
	if err != nil {
		return false, fmt.Errorf("drop the old ledger of %s: %w", token, err)
	}
	return n == 1, nil
}

const (
	slotDone   = 1
	slotFailed = 2

	// errorsKept bounds the failed rows whose reason Redis keeps, and
	// errorKeptBytes each reason there, so a run whose every row fails
	// stays flat in Redis too.
	errorsKept     = 5000
	errorKeptBytes = 512
)

// errLedgerGen: the commit was reserved in a ledger generation that is
// gone (Redis lost the ledger, or a retry reset it).
var errLedgerGen = errors.New("the row ledger was rebuilt")

// errShortReply is a Redis reply without the values asked for.
var errShortReply = errors.New("unexpected Redis reply")

// RowKey is the ledger key of a row: its number, or its jid when the
// number is unknown.
func RowKey(row int, jid string) string {
	if row > 0 {
		return fmt.Sprintf("%08d", row)
	}
	return "jid-" + jid
}

// recordScript records row results whose bit is still clear.
// KEYS: recorded, failed, commits, packs, errors, count, rows (jid hash), total.
// ARGV: generation ("" when no commit), commit id, n, then per row 3
// values: row, failed (0/1), text (the error; a jid row (row 0) passes its
// key and JSON as "key\njson").
// Returns: per row 1 if new, else 0; then the count of rows recorded and
// the total ("" while the split runs). Fails with LEDGERGEN when the
// generation is not the ledger's.
var recordScript = redis.NewScript(8, `
local gen = ARGV[1]
if gen ~= '' then
  if redis.call('HGET', KEYS[4], 'gen') ~= gen then
    return redis.error_reply('LEDGERGEN the row ledger was rebuilt')
  end
  redis.call('SETBIT', KEYS[3], tonumber(ARGV[2]), 1)
end
local n = tonumber(ARGV[3])
local out = {}
local added = 0
for i = 0, n - 1 do
  local b = 4 + i * 3
  local row = tonumber(ARGV[b])
  if row == 0 then
    local text = ARGV[b + 2]
    local nl = string.find(text, '\n', 1, true)
    out[i + 1] = redis.call('HSETNX', KEYS[7], string.sub(text, 1, nl - 1), string.sub(text, nl + 1))
  elseif redis.call('SETBIT', KEYS[1], row, 1) == 1 then
    out[i + 1] = 0
  else
    if ARGV[b + 1] == '1' then
      redis.call('SETBIT', KEYS[2], row, 1)
      if redis.call('HLEN', KEYS[5]) < `+strconv.Itoa(errorsKept)+` then
        redis.call('HSET', KEYS[5], row, ARGV[b + 2])
      end
    end
    added = added + 1
    out[i + 1] = 1
  end
end
local count
if added > 0 then
  count = redis.call('INCRBY', KEYS[6], added)
else
  count = tonumber(redis.call('GET', KEYS[6]) or '0')
end
count = count + redis.call('HLEN', KEYS[7])
out[n + 1] = count
out[n + 2] = redis.call('GET', KEYS[8]) or ''
return out`)

// Record stores r unless the row already has a result. isNew says it was
// new; last says it was the row that completed the run (the split has
// recorded the total and every row now has a result), so the caller can
// finalize at once instead of waiting for the next poll. It records in
// Redis alone: the pipeline records through its row packer, which stores
// the row's index entry first.
func (l Ledger) Record(ctx context.Context, token string, r RowResult) (isNew, last bool, err error) {
	news, lastAt, err := l.RecordBatch(ctx, token, []RowResult{r})
	if err != nil {
		return false, false, err
	}
	return news[0], lastAt == 0, nil
}

// RecordBatch is Record for many rows of one token in one script call.
// isNew[i] says rs[i] was new; last is the index of the row that completed
// the run, or -1.
func (l Ledger) RecordBatch(ctx context.Context, token string, rs []RowResult) (isNew []bool, last int, err error) {
	return l.recordCommit(ctx, token, "", 0, rs)
}

// recordCommit records rs as commit id of generation gen ("": no commit).
func (l Ledger) recordCommit(ctx context.Context, token, gen string, id uint32, rs []RowResult) (isNew []bool, last int, err error) {
	last = -1
	if len(rs) == 0 && gen == "" {
		return nil, last, nil
	}
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return nil, last, fmt.Errorf("ledger %s: %w", token, err)
	}
	defer c.Close()
	args := make([]any, 0, 8+3+3*len(rs))
	args = append(args, contract.RecordedKey(token), contract.FailedKey(token), contract.CommitsKey(token), contract.PacksKey(token), contract.ErrorsKey(token),
		contract.CountKey(token), contract.RowsKey(token), contract.TotalKey(token), gen, id, len(rs))
	for _, r := range rs {
		failed := r.Status != "done"
		switch {
		case r.Row <= 0:
			b, err := encodeResult(r)
			if err != nil {
				return nil, last, err
			}
			args = append(args, 0, 0, r.Key+"\n"+string(b))
		case failed:
			args = append(args, r.Row, 1, truncateUTF8(cmp.Or(r.Error, "failed"), errorKeptBytes))
		default:
			args = append(args, r.Row, 0, "")
		}
	}
	vals, err := redis.Values(recordScript.Do(c, args...))
	if err != nil && strings.HasPrefix(err.Error(), "LEDGERGEN") {
		return nil, last, fmt.Errorf("ledger %s: %w", token, errLedgerGen)
	}
	if err != nil || len(vals) != len(rs)+2 {
		return nil, last, fmt.Errorf("ledger %s: record %d rows: %w", token, len(rs), cmp.Or(err, errShortReply))
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

// truncateUTF8 cuts s to at most n bytes, not inside a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// reserveScript hands out a block of commit ids, starting the ledger's
// generation when it has none (a new run, or Redis lost the ledger).
// KEYS: packs. ARGV: a new generation, block size.
// Returns {generation, last id of the block}.
var reserveScript = redis.NewScript(1, `
local gen = redis.call('HGET', KEYS[1], 'gen')
if not gen then
  gen = ARGV[1]
  redis.call('HSET', KEYS[1], 'gen', gen)
end
return {gen, redis.call('HINCRBY', KEYS[1], 'seq', ARGV[2])}`)

// reserveCommits reserves n commit ids: last-n+1..last of generation gen.
func (l Ledger) reserveCommits(ctx context.Context, token string, n int) (gen string, last uint32, err error) {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("ledger %s: %w", token, err)
	}
	defer c.Close()
	var g [genBytes]byte
	_, _ = rand.Read(g[:])
	vals, err := redis.Values(reserveScript.Do(c, contract.PacksKey(token), hex.EncodeToString(g[:]), n))
	if err != nil || len(vals) != 2 {
		return "", 0, fmt.Errorf("ledger %s: reserve commits: %w", token, cmp.Or(err, errShortReply))
	}
	gen, _ = redis.String(vals[0], nil)
	hi, err := redis.Int64(vals[1], nil)
	if err != nil || hi <= 0 || hi > math.MaxUint32 {
		return "", 0, fmt.Errorf("ledger %s: reserve commits: id %d: %w", token, hi, cmp.Or(err, errShortReply))
	}
	return gen, uint32(hi), nil
}

// SetTotal records the number of data rows once the split has pushed them
// all.
func (l Ledger) SetTotal(ctx context.Context, token string, total int) error {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Do("SET", contract.TotalKey(token), total)
	return err
}

// Count is the number of rows that ended.
func (l Ledger) Count(ctx context.Context, token string) (int, error) {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.Send("GET", contract.CountKey(token))
	_ = c.Send("HLEN", contract.RowsKey(token))
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

// bitAt reports bit n of a Redis bitmap read whole (bit 0 is the high bit
// of byte 0, as SETBIT numbers them).
func bitAt(b []byte, n int) bool {
	return n >= 0 && n/8 < len(b) && b[n/8]&(0x80>>(n%8)) != 0
}

// frameLoc is where a recorded commit's frame is. Frames are not told
// apart by commit id alone: Redis restored from an older state can hand
// out an id again, and both frames then hold rows that count. It is kept
// small (16 bytes): a million-row run has some 300,000 frames.
type frameLoc struct {
	obj  uint32 // its object: frameSet.objects[obj]
	head uint32 // its header and index bytes: the data starts at off+head
	off  int64  // the frame's start in the object
}

// frameSet is every recorded frame Each found, and their objects.
type frameSet struct {
	objects []string // names under rows/<token>/
	frames  []frameLoc
}

func (fs *frameSet) at(n uint32) frameLoc { return fs.frames[n-1] }

// Each calls fn for every recorded row without holding the row results in
// memory: rows 1..total in order (a row with no result is passed as
// missing, with only Row and Key set), then the rows known only by jid
// (pushed by Ruby), in no particular order. It reads the bitmaps from
// Redis, then walks the frames in storage once to note which frame holds
// each row's entry (4 bytes a row and 16 a commit while it runs), and
// reads each frame's index again, through the packs the rows are read
// from, as the rows come.
func (l Ledger) Each(ctx context.Context, token string, total int, fn func(r RowResult, missing bool) error) error {
	var pr *PackReader
	if l.Store != nil {
		pr = NewPackReader(l.Store, token)
		defer pr.Close()
	}
	return l.EachFrom(ctx, token, total, pr, fn)
}

// EachFrom is Each reading frames through pr, the finalizer's pack reader,
// so a pack is fetched once for its index and its rows.
func (l Ledger) EachFrom(ctx context.Context, token string, total int, pr *PackReader, fn func(r RowResult, missing bool) error) error {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return fmt.Errorf("ledger %s: %w", token, err)
	}
	defer c.Close()
	recorded, err1 := bitmap(c, contract.RecordedKey(token))
	failed, err2 := bitmap(c, contract.FailedKey(token))
	commits, err3 := bitmap(c, contract.CommitsKey(token))
	meta, err4 := redis.Strings(c.Do("HMGET", contract.PacksKey(token), "gen", "seq"))
	gen, seq := "", 0
	if err4 == nil && len(meta) == 2 {
		gen = meta[0]
		seq, _ = strconv.Atoi(meta[1])
	}
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return fmt.Errorf("ledger %s: %w", token, err)
	}
	locs := make([]uint32, total+1) // the frame (1-based) holding each row's entry
	frames := &frameSet{}
	if l.Store != nil && pr != nil && gen != "" {
		if frames, err = l.findEntries(ctx, token, gen, min(seq, total+1024), total, recorded, failed, commits, locs); err != nil {
			return err
		}
	}
	idx := &indexCache{frames: frames, packs: pr}
	var reasons map[int]string // from Redis, for failed rows no frame holds
	for row := 1; row <= total; row++ {
		r := RowResult{Row: row, Key: RowKey(row, "")}
		if !bitAt(recorded, row) {
			if err := fn(r, true); err != nil {
				return err
			}
			continue
		}
		r.Status = "done"
		if bitAt(failed, row) {
			r.Status = "failed"
		}
		switch loc := locs[row]; {
		case loc != 0:
			e, err := idx.entry(ctx, loc, row, r.Status == "failed")
			if err != nil {
				return fmt.Errorf("ledger %s row %d: %w", token, row, err)
			}
			r.Error = e.err
			switch e.kind {
			case entryBlob:
				f := frames.at(loc)
				r.Pack, r.Offset, r.Size = frames.objects[f.obj], f.off+int64(f.head)+e.off, e.size
				r.NameInPack = true
			case entrySolo:
				r.File = contract.RowKeyPrefix(token) + e.name
			}
		case r.Status == "failed":
			if reasons == nil {
				if reasons, err = l.keptErrors(c, token); err != nil {
					return err
				}
			}
			r.Error = cmp.Or(reasons[row], "failed")
		case l.Store != nil:
			r.Status, r.Error = "failed", "no result in row storage"
		}
		if err := fn(r, false); err != nil {
			return err
		}
	}
	cursor := "0"
	for {
		vals, err := redis.Values(c.Do("HSCAN", contract.RowsKey(token), cursor, "MATCH", "jid-*", "COUNT", ledgerChunk))
		if err != nil || len(vals) != 2 {
			return fmt.Errorf("ledger %s: scan: %w", token, cmp.Or(err, errShortReply))
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

// findEntries walks every frame of token's packs and notes, for each
// recorded row, the frame of the lowest recorded commit of generation gen
// that holds it with its recorded status.
func (l Ledger) findEntries(ctx context.Context, token, gen string, commitIDs, total int, recorded, failed, commits []byte,
	locs []uint32) (*frameSet, error) {
	objs, err := l.Store.List(ctx, contract.RowKeyPrefix(token))
	if err != nil {
		return nil, fmt.Errorf("ledger %s: list row packs: %w", token, err)
	}
	// Sized once from the ids handed out (an upper bound on the frames),
	// not grown by doubling; the ids are only needed during the walk.
	fs := &frameSet{frames: make([]frameLoc, 0, max(commitIDs, 0))}
	ids := make([]uint32, 0, max(commitIDs, 0))
	for i, o := range objs {
		objs[i] = storage.Info{} // a run on S3 lists an object per commit: keep only names
		if !isPackObject(o.Key) {
			continue
		}
		obj := uint32(len(fs.objects))
		fs.objects = append(fs.objects, strings.Clone(path.Base(o.Key)))
		err := walkFrames(ctx, l.Store, o.Key, func(h frameHead, off int64, idx []byte) error {
			if h.gen != gen || !bitAt(commits, int(h.id)) {
				return nil // never recorded, or of a lost ledger
			}
			fs.frames = append(fs.frames, frameLoc{obj: obj, off: off, head: uint32(h.dataStart())})
			ids = append(ids, h.id)
			fi := uint32(len(fs.frames))
			return decodeIndex(idx, func(e frameEntry) {
				row := e.row
				if row < 1 || row > total || !bitAt(recorded, row) || e.failed != bitAt(failed, row) {
					return
				}
				if cur := locs[row]; cur != 0 && ids[cur-1] <= h.id {
					return
				}
				locs[row] = fi
			})
		})
		if err != nil {
			return nil, fmt.Errorf("ledger %s: read row pack %s: %w", token, o.Key, err)
		}
	}
	return fs, nil
}

// indexCache keeps the last few frame indexes Each read again, decoded.
// Rows of one frame are neighbours in row order.
type indexCache struct {
	frames *frameSet
	packs  *PackReader
	order  []uint32 // frames held, most recent last
	held   map[uint32][]frameEntry
}

// entry is the entry of row with the given status in frame.
func (ic *indexCache) entry(ctx context.Context, frame uint32, row int, failed bool) (frameEntry, error) {
	es, ok := ic.held[frame]
	if !ok {
		f := ic.frames.at(frame)
		p, err := ic.packs.load(ctx, contract.RowKeyPrefix(ic.packs.token)+ic.frames.objects[f.obj])
		if err != nil {
			return frameEntry{}, err
		}
		var at io.ReaderAt = p.at
		if at == nil {
			at = bytes.NewReader(p.data)
		}
		_, raw, err := readFrame(at, f.off, p.size-f.off)
		if err != nil {
			return frameEntry{}, fmt.Errorf("row pack %s at %d: %w", ic.frames.objects[f.obj], f.off, err)
		}
		if err := decodeIndex(raw, func(e frameEntry) { es = append(es, e) }); err != nil {
			return frameEntry{}, err
		}
		if ic.held == nil {
			ic.held = map[uint32][]frameEntry{}
		}
		if len(ic.order) >= 16 {
			delete(ic.held, ic.order[0])
			ic.order = ic.order[1:]
		}
		ic.order = append(ic.order, frame)
		ic.held[frame] = es
	}
	for _, e := range es {
		if e.row == row && e.failed == failed {
			return e, nil
		}
	}
	return frameEntry{}, fmt.Errorf("frame %d holds no entry for row %d", frame, row)
}

// bitmap reads a bitmap whole; a missing key is empty.
func bitmap(c redis.Conn, key string) ([]byte, error) {
	b, err := redis.Bytes(c.Do("GET", key))
	if errors.Is(err, redis.ErrNil) {
		return nil, nil
	}
	return b, err
}

// keptErrors reads the reasons Redis keeps for failed rows.
func (l Ledger) keptErrors(c redis.Conn, token string) (map[int]string, error) {
	m, err := redis.StringMap(c.Do("HGETALL", contract.ErrorsKey(token)))
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", token, err)
	}
	out := make(map[int]string, len(m))
	for k, v := range m {
		if n, err := strconv.Atoi(k); err == nil {
			out[n] = v
		}
	}
	return out, nil
}

// ledgerChunk is how many entries one scan step of the ledger covers.
const ledgerChunk = 1000

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
	n, err := redis.Int(c.Do("GET", contract.SplitKey(token)))
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
	_, err = c.Do("SET", contract.SplitKey(token), strconv.Itoa(n))
	return err
}

// Expire lets a finished token's records go after ttl, and takes the run
// off the tracked runs (books.go): Go saw it end.
func (l Ledger) Expire(ctx context.Context, token string, ttl time.Duration) error {
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, k := range ledgerKeys(token) {
		_ = c.Send("EXPIRE", k, int(ttl.Seconds()))
	}
	_ = c.Send("SREM", contract.TrackedKey, token) // Go saw the run end
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
	lo, hi := slices.Min(rows), slices.Max(rows)
	if lo < 1 {
		return nil, fmt.Errorf("ledger %s: row %d has no bit", token, lo)
	}
	c, err := l.Pool.GetContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", token, err)
	}
	defer c.Close()
	raw, err := redis.Bytes(c.Do("GETRANGE", contract.RecordedKey(token), lo/8, hi/8))
	if err != nil && !errors.Is(err, redis.ErrNil) {
		return nil, fmt.Errorf("ledger %s: %w", token, err)
	}
	base := (lo / 8) * 8
	for i, n := range rows {
		out[i] = bitAt(raw, n-base)
	}
	return out, nil
}

// Unrecorded lists the rows from..to that have no result, reading the
// bitmap in chunks; it stops after limit rows.
func (l Ledger) Unrecorded(ctx context.Context, token string, from, to, limit int) ([]int, error) {
	var out []int
	const chunk = 64 * ledgerChunk
	for lo := from; lo <= to && len(out) < limit; lo += chunk {
		hi := min(lo+chunk-1, to)
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
	n, err := redis.Int(c.Do("GET", contract.TotalKey(token)))
	if errors.Is(err, redis.ErrNil) {
		return 0, false, nil
	}
	return n, err == nil, err
}
