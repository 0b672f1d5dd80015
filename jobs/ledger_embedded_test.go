package jobs

import (
	"context"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/gomodule/redigo/redis"
)

// The ledger's script runs on the embedded fallback server too (miniredis,
// when no redis-server is installed): slots, packs and errors read back.
func TestLedgerOnEmbeddedServer(t *testing.T) {
	mr := miniredis.RunT(t)
	pool := &redis.Pool{Dial: func() (redis.Conn, error) { return redis.Dial("tcp", mr.Addr()) }}
	defer pool.Close()
	l := Ledger{Pool: pool}
	ctx := context.Background()
	const token = "0b7a54c6-5d52-4b39-9f2f-1f0b8f1fd7aa"
	rs := []RowResult{
		{Row: 1, Key: RowKey(1, ""), Status: "done", File: "row-000001.txt", Pack: "pack-a.bin", Offset: 1<<40 + 7, Size: 99, NameInPack: true},
		{Row: 3, Key: RowKey(3, ""), Status: "failed", Error: "bad row"},
		{Row: 1, Key: RowKey(1, ""), Status: "failed", Error: "second run of row 1"},
	}
	isNew, _, err := l.RecordBatch(ctx, token, rs)
	if err != nil {
		t.Fatal(err)
	}
	if !isNew[0] || !isNew[1] || isNew[2] {
		t.Fatalf("isNew = %v, want [true true false]", isNew)
	}
	if n, err := l.Count(ctx, token); err != nil || n != 2 {
		t.Fatalf("count = %d, %v", n, err)
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
	if g := got[0]; g.Pack != "pack-a.bin" || g.Offset != 1<<40+7 || g.Size != 99 || !g.NameInPack || g.Status != "done" {
		t.Errorf("row 1 = %+v", g)
	}
	if g := got[1]; g.Row != 3 || g.Status != "failed" || g.Error != "bad row" {
		t.Errorf("row 3 = %+v", g)
	}
}
