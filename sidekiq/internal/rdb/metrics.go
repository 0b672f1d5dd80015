package rdb

import (
	"strconv"

	"github.com/gomodule/redigo/redis"
)

// MetricsBucket is one j|… hash that execution counts go to, and its TTL.
type MetricsBucket struct {
	Key string
	TTL int // seconds
}

// ClassMetrics is one class's execution counts for one minute, as Sidekiq's
// metrics/tracking.rb flushes them.
type ClassMetrics struct {
	Class   string
	Buckets []MetricsBucket
	// Processed counts every run, Failed the failed ones, MS the
	// milliseconds of successful runs.
	Processed, Failed, MS int64
	// Succeeded says a run succeeded: <Class>|ms and the histogram are
	// written, even when MS is 0.
	Succeeded bool
	// HistogramKey is the BITFIELD key of the run-time histogram;
	// Histogram[i] runs fell into bucket i.
	HistogramKey string
	Histogram    []uint16
	HistogramTTL int // seconds
}

// WriteMetrics adds the counts to their hashes and histograms in one
// pipelined round trip: HINCRBY <bucket> <Class>|p, |f (when non-zero) and
// |ms (when a run succeeded), EXPIRE; BITFIELD <hist> OVERFLOW SAT INCRBY
// u16 #i n, as Histogram#persist, then EXPIRE.
func WriteMetrics(c redis.Conn, ms []ClassMetrics) error {
	n := 0
	send := func(cmd string, args ...any) error {
		n++
		return c.Send(cmd, args...)
	}
	for _, m := range ms {
		if m.Succeeded {
			args := []any{m.HistogramKey, "OVERFLOW", "SAT"}
			for i, cnt := range m.Histogram {
				if cnt > 0 {
					args = append(args, "INCRBY", "u16", "#"+strconv.Itoa(i), cnt)
				}
			}
			if err := send("BITFIELD", args...); err != nil {
				return err
			}
			if err := send("EXPIRE", m.HistogramKey, m.HistogramTTL); err != nil {
				return err
			}
		}
		for _, b := range m.Buckets {
			if err := send("HINCRBY", b.Key, m.Class+"|p", m.Processed); err != nil {
				return err
			}
			if m.Failed > 0 {
				if err := send("HINCRBY", b.Key, m.Class+"|f", m.Failed); err != nil {
					return err
				}
			}
			if m.Succeeded {
				if err := send("HINCRBY", b.Key, m.Class+"|ms", m.MS); err != nil {
					return err
				}
			}
			if err := send("EXPIRE", b.Key, b.TTL); err != nil {
				return err
			}
		}
	}
	return receiveAll(c, n)
}

// receiveAll flushes the pipeline and reads n replies; it returns the
// first error among them.
func receiveAll(c redis.Conn, n int) error {
	if n == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		return err
	}
	var first error
	for range n {
		if _, err := c.Receive(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
