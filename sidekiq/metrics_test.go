package sidekiq

import (
	"context"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

func TestMetricsFlusherRunOnce(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 30, 9, 7, 30, 0, time.UTC)
	for _, c := range []struct {
		d          Dialect
		hash, hist string
	}{
		{Dialect8, "j|261130|9:07", "h|Ok-30-9:7"},
		{Dialect7, "j|20261130|9:7", "Ok-30-09:7"},
		{Dialect6, "", ""},
	} {
		db := redistest.New(t)
		var buf execMetrics
		buf.record("Ok", at, 40*time.Millisecond, false)
		buf.record("Ok", at, 10*time.Millisecond, false)
		buf.record("Bad", at, time.Second, true)
		m := newMetricsFlusher(metricsFlusherParams{pool: db.Pool, dialect: c.d, interval: time.Hour, buf: &buf})
		if err := m.runOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		if c.d == Dialect6 {
			if keys, _ := redis.Strings(db.Do(t, "KEYS", "*"), nil); len(keys) != 0 {
				t.Fatalf("Sidekiq 6.4 has no metrics, wrote %q", keys)
			}
			continue
		}
		h, _ := redis.StringMap(db.Do(t, "HGETALL", c.hash), nil)
		if h["Ok|p"] != "2" || h["Ok|ms"] != "50" || h["Bad|p"] != "1" || h["Bad|f"] != "1" || h["Bad|ms"] != "" {
			t.Fatalf("dialect %d: %s = %v", c.d, c.hash, h)
		}
		// 10 ms and 40 ms fall into buckets 0 (< 20) and 2 (< 45).
		got, _ := redis.Ints(db.Do(t, "BITFIELD", c.hist, "GET", "u16", "#0", "GET", "u16", "#2"), nil)
		if len(got) != 2 || got[0] != 1 || got[1] != 1 {
			t.Fatalf("dialect %d: histogram %s = %v", c.d, c.hist, got)
		}
		// The buffer is empty after a flush: nothing is written twice.
		if err := m.runOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		if h2, _ := redis.StringMap(db.Do(t, "HGETALL", c.hash), nil); h2["Ok|p"] != "2" {
			t.Fatalf("second flush wrote again: %v", h2)
		}
	}
}
