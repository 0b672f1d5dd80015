package ledger

import (
	"context"
	"io"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/storage"
)

// The ledger's scripts run on the embedded fallback server too (miniredis,
// when no redis-server is installed): rows committed through the packer
// read back with their files and reasons, a second copy is not counted.
func TestLedgerOnEmbeddedServer(t *testing.T) {
	mr := miniredis.RunT(t)
	pool := &redis.Pool{Dial: func() (redis.Conn, error) { return redis.Dial("tcp", mr.Addr()) }}
	defer pool.Close()
	store, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l := Ledger{Pool: pool, Store: store}
	pk := &Packer{store: store, ledger: l}
	ctx := context.Background()
	const token = "0b7a54c6-5d52-4b39-9f2f-1f0b8f1fd7aa"
	rs := []RowResult{
		{Row: 1, Key: RowKey(1, ""), Status: "done", File: contract.RowKeyPrefix(token) + "row-000001.txt"},
		{Row: 3, Key: RowKey(3, ""), Status: "failed", Error: "bad row"},
		{Row: 1, Key: RowKey(1, ""), Status: "failed", Error: "second run of row 1"},
	}
	isNew, _, err := pk.CommitRows(ctx, token, rs, [][]byte{[]byte("one"), nil, nil})
	if err != nil {
		t.Fatal(err)
	}
	if !isNew[0] || !isNew[1] || isNew[2] {
		t.Fatalf("isNew = %v, want [true true false]", isNew)
	}
	if n, err := l.Count(ctx, token); err != nil || n != 2 {
		t.Fatalf("count = %d, %v", n, err)
	}
	if have, err := l.Recorded(ctx, token, []int{1, 2, 3}); err != nil || !have[0] || have[1] || !have[2] {
		t.Fatalf("recorded = %v, %v", have, err)
	}
	var got []RowResult
	err = l.Each(ctx, token, 3, func(r RowResult, missing bool) error {
		if !missing {
			got = append(got, r)
		}
		return nil
	})
	if err != nil || len(got) != 2 {
		t.Fatalf("each: %+v, %v", got, err)
	}
	if g := got[0]; g.Pack == "" || !g.NameInPack || g.Status != "done" {
		t.Errorf("row 1 = %+v", g)
	}
	pr := NewPackReader(store, token)
	defer pr.Close()
	rc, name, err := pr.Open(ctx, got[0])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	if name != "row-000001.txt" || string(b) != "one" {
		t.Errorf("row 1 reads %q named %q", b, name)
	}
	if g := got[1]; g.Row != 3 || g.Status != "failed" || g.Error != "bad row" {
		t.Errorf("row 3 = %+v", g)
	}
	failed, total, err := l.Failed(ctx, token)
	if err != nil || total != 1 || len(failed) != 1 || failed[0].Row != 3 {
		t.Errorf("failed = %+v (%d), %v", failed, total, err)
	}
}
