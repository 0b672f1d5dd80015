package sidekiq

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

type heartbeatBundle struct {
	db      *redistest.DB
	hb      *heartbeat
	events  []string
	flushed int
}

func setupHeartbeat(t *testing.T, legacy bool, inflight []string) *heartbeatBundle {
	t.Helper()
	b := &heartbeatBundle{db: redistest.New(t)}
	b.hb = newHeartbeat(heartbeatParams{
		pool:           b.db.Pool,
		log:            quietLogger(),
		identity:       "host:1:abcdefabcdef",
		interval:       time.Hour,
		ttl:            60,
		concurrency:    func() int { return 5 },
		legacyWork:     legacy,
		inflightQueues: inflight,
		now:            func() time.Time { return time.Unix(1_800_000_000, 500_000_000) },
		info:           func() ([]byte, error) { return []byte(`{"identity":"host:1:abcdefabcdef"}`), nil },
		running: func() (map[string][]byte, int) {
			return map[string][]byte{"t1": []byte(`{"queue":"q","payload":"{}","run_at":1}`)}, 1
		},
		quiet:      func() bool { return false },
		flushStats: func(context.Context) { b.flushed++ },
		onQuiet:    func() { b.events = append(b.events, "quiet") },
		onStop:     func() { b.events = append(b.events, "stop") },
		onDump:     func() { b.events = append(b.events, "dump") },
	})
	return b
}

func TestHeartbeatRunOnceWritesProcess(t *testing.T) {
	t.Parallel()
	b := setupHeartbeat(t, false, nil)
	if err := b.hb.runOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := "host:1:abcdefabcdef"
	if ok, _ := redis.Bool(b.db.Do(t, "SISMEMBER", "processes", id), nil); !ok {
		t.Fatal("process not registered")
	}
	h, _ := redis.StringMap(b.db.Do(t, "HGETALL", id), nil)
	if h["info"] != `{"identity":"host:1:abcdefabcdef"}` || h["busy"] != "1" || h["concurrency"] != "5" ||
		h["beat"] != "1800000000.5" || h["quiet"] != "false" || h["rss"] == "" || h["rtt_us"] == "" {
		t.Fatalf("process hash %v", h)
	}
	if ttl, _ := redis.Int(b.db.Do(t, "TTL", id), nil); ttl < 55 {
		t.Fatalf("hash ttl %d", ttl)
	}
	if w, _ := redis.StringMap(b.db.Do(t, "HGETALL", id+":work"), nil); w["t1"] == "" {
		t.Fatalf("work hash %v", w)
	}
	if n, _ := redis.Int(b.db.Do(t, "EXISTS", id+":workers", "pallarel:inflight"), nil); n != 0 {
		t.Fatal("legacy workers hash or in-flight index written without being asked")
	}
	if b.flushed != 1 {
		t.Fatalf("stats flushed %d times, want once per beat", b.flushed)
	}
}

func TestHeartbeatLegacyWorkAndInflightRegistration(t *testing.T) {
	t.Parallel()
	b := setupHeartbeat(t, true, []string{"a", "b"})
	if err := b.hb.runOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, _ := redis.Int(b.db.Do(t, "HLEN", "host:1:abcdefabcdef:workers"), nil); n != 1 {
		t.Fatal("6.4.1 workers hash not written")
	}
	idx, _ := redis.Strings(b.db.Do(t, "SMEMBERS", "pallarel:inflight"), nil)
	slices.Sort(idx)
	if want := []string{"host:1:abcdefabcdef|a", "host:1:abcdefabcdef|b"}; !slices.Equal(idx, want) {
		t.Fatalf("in-flight index %q", idx)
	}
}

// Each beat acts on one signal the Web UI pushed, oldest first.
func TestHeartbeatActsOnWebUISignals(t *testing.T) {
	t.Parallel()
	b := setupHeartbeat(t, false, nil)
	b.db.Do(t, "LPUSH", "host:1:abcdefabcdef-signals", "TSTP", "TTIN", "BOGUS", "TERM")
	for range 5 {
		if err := b.hb.runOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"quiet", "dump", "stop"}; !slices.Equal(b.events, want) {
		t.Fatalf("events %q, want %q", b.events, want)
	}
}

// TestProcessesReadsTheInfoItWrote: the read API decodes a heartbeat's
// info back, queues and weights in order. When the weights hash came to be
// written in queue order, Processes could no longer decode it and listed
// every Go process without its queues, so the run supervisor saw no live
// worker on any queue and relaunched them.
func TestProcessesReadsTheInfoItWrote(t *testing.T) {
	t.Parallel()
	var info processInfo
	w := newQueueWeights([]QueueWeight{{Name: "zeta", Weight: 2}, {Name: "alpha", Weight: 1}})
	raw, err := encodeJSON(processInfo{Queues: []string{"zeta", "alpha"}, Weights: []queueWeights{w},
		Capsules: map[string]capsuleInfo{"default": {Concurrency: 3, Weights: w}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := unmarshalNumber(raw, &info); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	if fmt.Sprint(info.Queues) != "[zeta alpha]" || fmt.Sprint(info.Weights) != "[[{zeta 2} {alpha 1}]]" ||
		fmt.Sprint(info.Capsules["default"].Weights) != "[{zeta 2} {alpha 1}]" {
		t.Fatalf("decoded %+v from %s", info, raw)
	}
}
