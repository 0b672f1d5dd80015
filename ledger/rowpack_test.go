package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/storage"
)

// Many jobs committing at once share packs, every row's bytes come back
// from its pack, each row is recorded once, and exactly one commit reports
// the run complete: on a store that appends (segments) and on one that
// cannot (an object per commit, as on S3).
func TestRowPackerGroupsCommits(t *testing.T) {
	t.Run("segments", func(t *testing.T) { testRowPacker(t, false) })
	t.Run("objects", func(t *testing.T) { testRowPacker(t, true) })
}

func testRowPacker(t *testing.T, hideAppend bool) {
	ctx := context.Background()
	db := redistest.New(t)
	local, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var store storage.Store = local
	if hideAppend {
		store = struct{ storage.Store }{local}
	}
	ledger := Ledger{Pool: db.Pool, Store: store}
	pk := &Packer{store: store, ledger: ledger}
	const rows, workers = 3000, 24
	const token = "0b9e4a52-9d7e-4e7c-9d55-0d3c1b4e2f10"
	if err := ledger.SetTotal(ctx, token, rows); err != nil {
		t.Fatal(err)
	}
	content := func(n int) string { return strings.Repeat(fmt.Sprintf("row %d;", n), n%7) }

	var mu sync.Mutex
	lasts, news := 0, 0
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				// Every tenth row commits twice, as a job run again after a
				// crash would: the second commit must not count.
				for range 1 + btoi(n%10 == 0) {
					r := &packedRow{token: token, data: []byte(content(n)),
						res: RowResult{Row: n, Key: RowKey(n, ""), Status: "done", File: fmt.Sprintf("rows/%s/row-%d.txt", token, n)}}
					isNew, last, err := pk.commit(ctx, r)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					news += btoi(isNew)
					lasts += btoi(last)
					mu.Unlock()
				}
			}
		}()
	}
	for n := 1; n <= rows; n++ {
		work <- n
	}
	close(work)
	wg.Wait()
	// Every job has returned; the commits a job handed off are joined.
	pk.Wait()
	pk.mu.Lock()
	idle := !pk.flushing && len(pk.pending) == 0
	pk.mu.Unlock()
	if !idle {
		t.Fatalf("the packer still commits after Wait")
	}
	pk.Release(token)
	if news != rows || lasts != 1 {
		t.Fatalf("new rows %d (want %d), last reported %d times (want 1)", news, rows, lasts)
	}
	packs, err := store.List(ctx, contract.RowKeyPrefix(token))
	if err != nil {
		t.Fatal(err)
	}
	if len(packs) == 0 || len(packs) >= rows {
		t.Fatalf("%d pack objects for %d rows: commits were not grouped", len(packs), rows)
	}
	t.Logf("%d rows (+%d repeated) in %d packs", rows, rows/10, len(packs))

	reader := NewPackReader(store, token)
	seen := 0
	err = ledger.Each(ctx, token, rows, func(r RowResult, missing bool) error {
		seen++
		if missing || r.Row != seen || r.Pack == "" {
			return fmt.Errorf("entry %d: %+v missing=%v", seen, r, missing)
		}
		rc, name, err := reader.Open(ctx, r)
		if err != nil {
			return err
		}
		defer rc.Close()
		if want := fmt.Sprintf("row-%d.txt", r.Row); name != want {
			return fmt.Errorf("row %d is named %q in its pack, want %q", r.Row, name, want)
		}
		b, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		if string(b) != content(r.Row) {
			return fmt.Errorf("row %d reads %q, want %q", r.Row, b, content(r.Row))
		}
		return nil
	})
	if err != nil || seen != rows {
		t.Fatalf("read back %d rows: %v", seen, err)
	}
}

// CommitAsync returns at once: one producer (a worker whose jobs return
// before their commit) fills commits of many rows, where Commit would make
// one commit a row; every row's then runs once, each row is recorded once
// and one reports the run complete; Wait joins the committing goroutine.
func TestRowPackerCommitAsync(t *testing.T) {
	ctx := context.Background()
	db := redistest.New(t)
	local, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := struct{ storage.Store }{local} // an object per commit, to count them
	ledger := Ledger{Pool: db.Pool, Store: store}
	pk := NewPacker(store, ledger)
	const rows = 2000
	const token = "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
	if err := ledger.SetTotal(ctx, token, rows); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	thens, news, lasts := 0, 0, 0
	for n := 1; n <= rows; n++ {
		res := RowResult{Row: n, Key: RowKey(n, ""), Status: "done", File: fmt.Sprintf("rows/%s/row-%d.txt", token, n)}
		pk.CommitAsync(ctx, token, res, []byte(fmt.Sprintf("row %d", n)), func(isNew, last bool, err error) {
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			thens++
			news += btoi(isNew)
			lasts += btoi(last)
			mu.Unlock()
		})
	}
	pk.Wait()
	if thens != rows || news != rows || lasts != 1 {
		t.Fatalf("then ran %d times, %d new, last %d times; want %d, %d, 1", thens, news, lasts, rows, rows)
	}
	packs, err := store.List(ctx, contract.RowKeyPrefix(token))
	if err != nil {
		t.Fatal(err)
	}
	if len(packs) == 0 || len(packs) > rows/4 {
		t.Fatalf("%d commits for %d rows from one producer: not grouped", len(packs), rows)
	}
	t.Logf("%d rows in %d commits", rows, len(packs))
	seen := 0
	if err := ledger.Each(ctx, token, rows, func(r RowResult, missing bool) error {
		seen++
		if missing || r.Pack == "" {
			return fmt.Errorf("row %d: %+v missing=%v", seen, r, missing)
		}
		return nil
	}); err != nil || seen != rows {
		t.Fatalf("read back %d rows: %v", seen, err)
	}
}

// A then that commits a row itself (as a row job out of retries is recorded
// failed by its death handler) does not wait for ever on the commit it
// runs after: every row of both kinds is recorded.
func TestRowPackerThenCommits(t *testing.T) {
	ctx := context.Background()
	db := redistest.New(t)
	local, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ledger := Ledger{Pool: db.Pool, Store: local}
	pk := NewPacker(local, ledger)
	const rows = 600 // more than a commit's PackMaxRows: the lead goes on after the thens
	const token = "6d2e3f4a-5b6c-4d7e-8f9a-0b1c2d3e4f5a"
	if err := ledger.SetTotal(ctx, token, 2*rows); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed sync.Map
	for n := 1; n <= rows; n++ {
		wg.Add(1)
		res := RowResult{Row: n, Key: RowKey(n, ""), Status: "done", File: fmt.Sprintf("rows/%s/row-%d.txt", token, n)}
		pk.CommitAsync(ctx, token, res, []byte(fmt.Sprintf("row %d", n)), func(_, _ bool, err error) {
			defer wg.Done()
			if err != nil {
				t.Error(err)
				return
			}
			m := rows + n
			_, _, err = pk.Commit(ctx, token, RowResult{Row: m, Key: RowKey(m, ""), Status: "failed", Error: "out of retries"}, nil)
			if err != nil {
				t.Error(err)
			}
			failed.Store(m, true)
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); pk.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("a then that commits never returned: the commits wait on each other")
	}
	n, err := ledger.Count(ctx, token)
	if err != nil || n != 2*rows {
		t.Fatalf("%d rows recorded (%v), want %d", n, err, 2*rows)
	}
}

// Each walks numbered rows in order across chunk boundaries, reports the
// gaps, and then the rows known only by jid.
func TestLedgerEach(t *testing.T) {
	ctx := context.Background()
	db := redistest.New(t)
	ledger := Ledger{Pool: db.Pool}
	const token = "5f0c2c55-7a57-4b59-a1e1-8d8d7c0e6a11"
	const total = 2*ledgerChunk + 17
	var rs []RowResult
	for n := 1; n <= total; n++ {
		if n%500 != 0 {
			rs = append(rs, RowResult{Row: n, Key: RowKey(n, ""), Status: "done", File: "f"})
		}
	}
	for i := range 3 {
		rs = append(rs, RowResult{Key: RowKey(0, fmt.Sprint("j", i)), Status: "failed", Error: "x"})
	}
	if _, _, err := ledger.RecordBatch(ctx, token, rs); err != nil {
		t.Fatal(err)
	}

	var order []int
	var missing []int
	jids := 0
	err := ledger.Each(ctx, token, total, func(r RowResult, absent bool) error {
		switch {
		case absent:
			missing = append(missing, r.Row)
		case strings.HasPrefix(r.Key, "jid-"):
			jids++
		default:
			order = append(order, r.Row)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(order)+len(missing) != total || jids != 3 {
		t.Fatalf("%d present + %d missing (want %d), %d jid rows (want 3)", len(order), len(missing), total, jids)
	}
	for i := 1; i < len(order); i++ {
		if order[i] <= order[i-1] {
			t.Fatalf("rows out of order: %d after %d", order[i], order[i-1])
		}
	}
	if fmt.Sprint(missing) != "[500 1000 1500 2000]" {
		t.Fatalf("missing = %v", missing)
	}
	// An error from fn stops the walk and comes back as it is.
	stop := errors.New("stop here")
	calls := 0
	err = ledger.Each(ctx, token, total, func(r RowResult, absent bool) error {
		if calls++; r.Row == ledgerChunk+5 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != ledgerChunk+5 {
		t.Fatalf("Each after fn failed = %v with %d calls; want %v after %d", err, calls, stop, ledgerChunk+5)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestSplitBlobNames reads back blobs whose names fit the first read, end
// at its edge and run past it, up to the longest allowed, and refuses a
// name longer than that or than the blob.
func TestSplitBlobNames(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 9, blobHeadBytes - 2, blobHeadBytes - 1, blobHeadBytes, blobHeadBytes + 1, 300, maxNameBytes} {
		name := strings.Repeat("n", n)
		var bb bytes.Buffer
		bb.WriteString("prefix")
		writeBlob(&bb, name, []byte("body"))
		writeBlob(&bb, "next.txt", []byte("other"))
		size := int64(bb.Len() - len("prefix") - (1 + len("next.txt") + len("other")))
		got, sec, err := splitBlob(bytes.NewReader(bb.Bytes()), int64(len("prefix")), size)
		if err != nil {
			t.Fatalf("name of %d bytes: %v", n, err)
		}
		body, _ := io.ReadAll(sec)
		if got != name || string(body) != "body" {
			t.Errorf("name of %d bytes: got a name of %d bytes and body %q", n, len(got), body)
		}
	}
	var bb bytes.Buffer
	writeBlob(&bb, strings.Repeat("n", maxNameBytes+1), []byte("body"))
	if _, _, err := splitBlob(bytes.NewReader(bb.Bytes()), 0, int64(bb.Len())); err == nil {
		t.Error("a name over maxNameBytes was read")
	}
	if _, _, err := splitBlob(bytes.NewReader(bb.Bytes()), 0, 10); err == nil {
		t.Error("a name past the blob's end was read")
	}
}

// TestSplitBlobGarbage bounds what reading one row's name costs the heap:
// the finalizer reads millions.
func TestSplitBlobGarbage(t *testing.T) {
	var bb bytes.Buffer
	writeBlob(&bb, "row-0001234-A-0001234.txt", []byte("body"))
	r := bytes.NewReader(bb.Bytes())
	const n = 10_000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		if _, _, err := splitBlob(r, 0, int64(bb.Len())); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 256 {
		t.Errorf("splitBlob allocated %d bytes a call, want at most 256", per)
	}
}
