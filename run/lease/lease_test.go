package lease_test

import (
	"context"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/run/lease"
)

// Two holders on one key: one has it at a time, renewing is the owner's
// alone, a release by the other leaves it, and an expired claim passes on.
func TestOneHolderAtATime(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	ctx := context.Background()
	a, b := lease.New(db.Pool, "a"), lease.New(db.Pool, "b")
	const key = "lease-test"
	want := func(what string, got bool, err error, w bool) {
		t.Helper()
		if err != nil || got != w {
			t.Fatalf("%s = %v, %v; want %v", what, got, err, w)
		}
	}
	ok, err := a.Take(ctx, key, time.Minute)
	want("a takes", ok, err, true)
	ok, err = b.Take(ctx, key, time.Minute)
	want("b takes a held key", ok, err, false)
	ok, err = b.Renew(ctx, key, time.Minute)
	want("b renews a's claim", ok, err, false)
	ok, err = b.Hold(ctx, key, time.Minute)
	want("b holds a's claim", ok, err, false)
	if err := b.Release(ctx, key); err != nil {
		t.Fatal(err)
	}
	if v, _ := redis.String(db.Do(t, "GET", key), nil); v != "a" {
		t.Fatalf("b's release took a's claim: key holds %q", v)
	}
	ok, err = a.Hold(ctx, key, 150*time.Millisecond)
	want("a holds its own claim", ok, err, true)
	if ttl, _ := redis.Int(db.Do(t, "PTTL", key), nil); ttl > 150 || ttl <= 0 {
		t.Fatalf("renewed ttl %d ms, want at most 150", ttl)
	}
	// a's claim lapses (it stopped renewing): b takes it over.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err = b.Hold(ctx, key, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b never took the lapsed claim")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ok, err = a.Renew(ctx, key, time.Minute)
	want("a renews after losing it", ok, err, false)
	if err := b.Release(ctx, key); err != nil {
		t.Fatal(err)
	}
	ok, err = a.Take(ctx, key, time.Minute)
	want("a takes a released key", ok, err, true)
}
