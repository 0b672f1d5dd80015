package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/storage"
)

type ledgerBundle struct {
	db     *redistest.DB
	store  *storage.Local
	ledger Ledger
	pk     *Packer
	token  string
}

func setupLedger(t *testing.T) ledgerBundle {
	t.Helper()
	db := redistest.New(t)
	store, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l := Ledger{Pool: db.Pool, Store: store}
	return ledgerBundle{db: db, store: store, ledger: l, pk: &Packer{store: store, ledger: l},
		token: "7d7c3b1e-2a9f-4c61-8e0e-5b3f6a2d9c44"}
}

func (b ledgerBundle) done(t *testing.T, row int, content string) bool {
	t.Helper()
	isNew, _, err := b.pk.CommitRows(context.Background(), b.token,
		[]RowResult{{Row: row, Key: RowKey(row, ""), Status: "done", File: fmt.Sprintf("row-%d.txt", row)}}, [][]byte{[]byte(content)})
	if err != nil {
		t.Fatal(err)
	}
	return isNew[0]
}

func (b ledgerBundle) failed(t *testing.T, row int, reason string) bool {
	t.Helper()
	isNew, _, err := b.pk.CommitRows(context.Background(), b.token,
		[]RowResult{{Row: row, Key: RowKey(row, ""), Status: "failed", Error: reason}}, [][]byte{nil})
	if err != nil {
		t.Fatal(err)
	}
	return isNew[0]
}

// read returns every row as "status:content" (done) or "status:reason".
func (b ledgerBundle) read(t *testing.T, total int) map[int]string {
	t.Helper()
	ctx := context.Background()
	pr := NewPackReader(b.store, b.token)
	defer pr.Close()
	out := map[int]string{}
	err := b.ledger.Each(ctx, b.token, total, func(r RowResult, missing bool) error {
		switch {
		case missing:
			out[r.Row] = "missing"
		case r.Status == "done":
			rc, _, err := pr.Open(ctx, r)
			if err != nil {
				return err
			}
			defer rc.Close()
			body, err := io.ReadAll(rc)
			out[r.Row] = "done:" + string(body)
			return err
		default:
			out[r.Row] = "failed:" + r.Error
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The first recorded copy of a row wins, whatever later copies say; a
// frame stored but never recorded, and a torn frame at a segment's end,
// are ignored.
func TestLedgerFirstRecordedCopyWins(t *testing.T) {
	b := setupLedger(t)
	ctx := context.Background()
	if !b.done(t, 1, "first") || b.done(t, 1, "second") || b.failed(t, 1, "late failure") {
		t.Fatal("row 1: a later copy was counted")
	}
	if !b.failed(t, 2, "boom") || b.done(t, 2, "done after it failed") {
		t.Fatal("row 2: a later copy was counted")
	}
	// Row 3: a frame stored under a reserved id, then its process died
	// before recording it; the row ran again elsewhere.
	gen, id, err := b.pk.nextID(ctx, b.token)
	if err != nil {
		t.Fatal(err)
	}
	var bb bytes.Buffer
	writeBlob(&bb, "row-3.txt", []byte("ghost"))
	ghostData := bb.Bytes()
	ghost, err := encodeFrame(gen, id, []frameEntry{{row: 3, kind: entryBlob, size: int64(len(ghostData))}}, ghostData)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.pk.write(ctx, b.token, ghost); err != nil {
		t.Fatal(err)
	}
	if !b.done(t, 3, "real") {
		t.Fatal("row 3 not new")
	}
	// A torn frame at the end of the segment (a process killed mid-append).
	frame, _ := encodeFrame(gen, id+1, []frameEntry{{row: 4}}, nil)
	if _, _, err := b.pk.write(ctx, b.token, frame[:frameHeader+1]); err != nil {
		t.Fatal(err)
	}
	got := b.read(t, 4)
	want := map[int]string{1: "done:first", 2: "failed:boom", 3: "done:real", 4: "missing"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("rows = %v, want %v", got, want)
	}
	if n, _ := b.ledger.Count(ctx, b.token); n != 3 {
		t.Fatalf("count = %d, want 3", n)
	}
}

// Redis losing the ledger starts a new generation: a commit reserved in
// the lost one is made again in the new one, and frames of the lost one
// do not count.
func TestLedgerRebuiltAfterRedisLostIt(t *testing.T) {
	b := setupLedger(t)
	ctx := context.Background()
	b.done(t, 1, "old one")
	b.done(t, 2, "old two")
	b.db.Do(t, "FLUSHDB")
	if !b.done(t, 2, "new two") {
		t.Fatal("row 2 was not new after Redis lost the ledger")
	}
	if got := b.read(t, 2); got[1] != "missing" || got[2] != "done:new two" {
		t.Fatalf("rows = %v", got)
	}
	// A commit whose generation is gone is refused by the script itself.
	gen, id, err := b.pk.nextID(ctx, b.token)
	if err != nil {
		t.Fatal(err)
	}
	b.db.Do(t, "FLUSHDB")
	_, _, err = b.ledger.recordCommit(ctx, b.token, gen, id, []RowResult{{Row: 5, Status: "done"}})
	if !errors.Is(err, errLedgerGen) {
		t.Fatalf("record in a lost generation = %v, want errLedgerGen", err)
	}
}

// Redis restored from an older state (an AOF that lost its last second)
// can hand a commit id out again: both frames holding it count.
func TestLedgerCommitIDHandedOutTwice(t *testing.T) {
	b := setupLedger(t)
	ctx := context.Background()
	gen, id, err := b.pk.nextID(ctx, b.token)
	if err != nil {
		t.Fatal(err)
	}
	for row := 1; row <= 2; row++ {
		var bb bytes.Buffer
		writeBlob(&bb, fmt.Sprintf("row-%d.txt", row), []byte(fmt.Sprint("content ", row)))
		f, err := encodeFrame(gen, id, []frameEntry{{row: row, kind: entryBlob, size: int64(bb.Len())}}, bb.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.pk.write(ctx, b.token, f); err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.ledger.recordCommit(ctx, b.token, gen, id, []RowResult{{Row: row, Status: "done"}}); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.read(t, 2); got[1] != "done:content 1" || got[2] != "done:content 2" {
		t.Fatalf("rows = %v", got)
	}
}

// Reset (a retry) forgets the rows so the later copy of a retried row is
// the one kept.
func TestLedgerResetLetsARetriedRowWin(t *testing.T) {
	b := setupLedger(t)
	ctx := context.Background()
	b.failed(t, 1, "first try")
	b.done(t, 2, "kept")
	if err := b.ledger.Reset(ctx, b.token); err != nil {
		t.Fatal(err)
	}
	_ = b.store.DeletePrefix(ctx, contract.RowKeyPrefix(b.token)) // as restoreFromZip does
	b.pk.Release(b.token)
	b.done(t, 2, "kept")
	if !b.done(t, 1, "second try") {
		t.Fatal("the retried row was not new")
	}
	if got := b.read(t, 2); got[1] != "done:second try" || got[2] != "done:kept" {
		t.Fatalf("rows = %v", got)
	}
}

// Redis holds bits per row, not entries: 100,000 rows committed in small
// groups (as a worker at -c 10 commits them), a hundred of them failed
// with long reasons, cost Redis about 100 KB: 2 bits a row (25 KB), a bit
// a commit, and the reasons kept for the live list (512 bytes each). The
// 16-byte slots before took 1.6 MB.
func TestLedgerRedisMemoryIsFlat(t *testing.T) {
	b := setupLedger(t)
	ctx := context.Background()
	const rows, group = 100000, 10
	for n := 1; n <= rows; n += group {
		rs := make([]RowResult, group)
		data := make([][]byte, group)
		for i := range group {
			rs[i] = RowResult{Row: n + i, Key: RowKey(n+i, ""), Status: "done", File: fmt.Sprintf("row-%d.txt", n+i)}
			data[i] = []byte("x")
			if (n+i)%1000 == 0 {
				rs[i] = RowResult{Row: n + i, Key: RowKey(n+i, ""), Status: "failed", Error: strings.Repeat("e", 2000)}
				data[i] = nil
			}
		}
		if _, _, err := b.pk.CommitRows(ctx, b.token, rs, data); err != nil {
			t.Fatal(err)
		}
	}
	used := 0
	for _, k := range ledgerKeys(b.token) {
		n, _ := redis.Int(b.db.Do(t, "MEMORY", "USAGE", k), nil)
		used += n
	}
	t.Logf("%d rows: %d bytes in Redis", rows, used)
	if used > 128<<10 {
		t.Fatalf("the ledger of %d rows takes %d bytes in Redis, want under 128 KiB", rows, used)
	}
	got := b.read(t, rows)
	if got[1000] != "failed:"+strings.Repeat("e", 2000) || got[rows] != "failed:"+strings.Repeat("e", 2000) || got[999] != "done:x" {
		t.Fatalf("rows 999, 1000: %q %q", got[999], got[1000])
	}
	if failed, total, err := b.ledger.Failed(ctx, b.token); err != nil || total != rows/1000 || len(failed[0].Error) != errorKeptBytes {
		t.Fatalf("failed list: %d rows, total %d, %v", len(failed), total, err)
	}
}
