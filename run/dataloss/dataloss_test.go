package dataloss_test

import (
	"context"
	"testing"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/run/dataloss"
)

// The epoch changes with a restart, and keys evicted under maxmemory count
// up; a run's own keys tell a deleted queue from a lost one; Relist lists
// a queue again.
func TestSignsOfDataLoss(t *testing.T) {
	t.Parallel()
	node := redistest.NewNode(t, "--maxmemory", "4mb", "--maxmemory-policy", "allkeys-random")
	pool := &redis.Pool{Dial: func() (redis.Conn, error) { return redis.Dial("tcp", node.Addr) }}
	defer pool.Close()
	r := dataloss.New(pool)
	ctx := context.Background()
	epoch, evicted, err := r.Epoch(ctx)
	if err != nil || epoch == "/" || evicted != 0 {
		t.Fatalf("Epoch = %q, %d, %v", epoch, evicted, err)
	}
	token := "run-a"
	if ok, err := r.RunKeysSurvive(ctx, token); err != nil || ok {
		t.Fatalf("RunKeysSurvive of a run with no keys = %v, %v", ok, err)
	}
	node.Do("SET", contract.SplitKey(token), 10)
	if ok, err := r.RunKeysSurvive(ctx, token); err != nil || !ok {
		t.Fatalf("RunKeysSurvive with the split progress = %v, %v", ok, err)
	}
	if err := r.Relist(ctx, "report-x"); err != nil {
		t.Fatal(err)
	}
	if n, _ := redis.Int(node.Do("SISMEMBER", "queues", "report-x"), nil); n != 1 {
		t.Error("Relist did not list the queue")
	}
	big := make([]byte, 64<<10)
	for i := range 200 { // 12.5 MiB into 4: Redis evicts
		node.Do("SET", "filler-"+string(rune('a'+i%26))+string(rune('a'+i/26)), big)
	}
	if n, err := r.Evictions(ctx); err != nil || n == 0 {
		t.Errorf("Evictions after filling past maxmemory = %d, %v", n, err)
	}
	node.Restart()
	pool.Close()
	pool = &redis.Pool{Dial: func() (redis.Conn, error) { return redis.Dial("tcp", node.Addr) }}
	defer pool.Close()
	after, _, err := dataloss.New(pool).Epoch(ctx)
	if err != nil || after == epoch {
		t.Errorf("epoch across a restart: %q, was %q (%v)", after, epoch, err)
	}
}
