package sidekiq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

// A job over its retry count but within its retry_for window: Sidekiq 8.1
// (job_retry.rb, #6878) retries it, as retry_for alone decides; 8.0 sends
// it to the dead set, as either limit ends it. Both on a real server.
func TestRetryForRuleByDialect(t *testing.T) {
	for _, tc := range []struct {
		dialect   Dialect
		wantRetry bool
	}{{Dialect81, true}, {Dialect8, false}} {
		t.Run(tc.dialect.String(), func(t *testing.T) {
			db := redistest.New(t)
			reg := NewRegistry()
			reg.Register(func(context.Context, *Job) error { return errors.New("boom") }, "Fails")
			startServer(t, db, reg, Options{Queues: []QueueWeight{{Name: "q"}}, Concurrency: 1, Dialect: tc.dialect})
			failedAt := time.Now().Add(-time.Minute).UnixMilli()
			db.Do(t, "LPUSH", "queue:q", fmt.Sprintf(`{"class":"Fails","args":[],"jid":"bbbbbbbbbbbbbbbbbbbbbbbb","queue":"q","retry":2,"retry_count":4,"retry_for":3600,"failed_at":%d,"error_message":"x","error_class":"E","created_at":%d}`, failedAt, failedAt))
			db.Do(t, "SADD", "queues", "q")
			waitFor(t, 10*time.Second, "the job settled", func() bool {
				r, _ := redis.Int(db.Do(t, "ZCARD", "retry"), nil)
				d, _ := redis.Int(db.Do(t, "ZCARD", "dead"), nil)
				return r+d == 1
			})
			inRetry, _ := redis.Int(db.Do(t, "ZCARD", "retry"), nil)
			if (inRetry == 1) != tc.wantRetry {
				t.Fatalf("dialect %s: in retry %d, want retry %v", tc.dialect, inRetry, tc.wantRetry)
			}
		})
	}
}

// The heartbeat writes the capsule's weights in queue order (as Ruby's
// Hash), not sorted: the Busy page shows strict queues in fetch order;
// and the advertised version follows the dialect.
func TestHeartbeatQueueOrderAndVersion(t *testing.T) {
	db := redistest.New(t)
	srv := startServer(t, db, NewRegistry(), Options{
		Queues:      []QueueWeight{{Name: "zeta"}, {Name: "alpha"}, {Name: "mid"}},
		Concurrency: 2, Dialect: Dialect81,
	})
	var info string
	waitFor(t, 5*time.Second, "heartbeat", func() bool {
		info, _ = redis.String(db.Do(t, "HGET", srv.Identity(), "info"), nil)
		return info != ""
	})
	for _, want := range []string{
		`"weights":[{"zeta":0,"alpha":0,"mid":0}]`,
		`"capsules":{"default":{"concurrency":2,"mode":"strict","weights":{"zeta":0,"alpha":0,"mid":0}}}`,
		`"queues":["zeta","alpha","mid"]`,
		`"version":"8.1.7"`,
	} {
		if !strings.Contains(info, want) {
			t.Errorf("info lacks %s: %s", want, info)
		}
	}
	var parsed map[string]any
	if err := json.Unmarshal([]byte(info), &parsed); err != nil {
		t.Fatalf("info is not JSON: %v", err)
	}
}

func TestQueueWeightsKeepFirstPlaceLastWeight(t *testing.T) {
	b, err := json.Marshal(newQueueWeights([]QueueWeight{{"b", 1}, {"a", 2}, {"b", 3}}))
	if err != nil || string(b) != `{"b":3,"a":2}` {
		t.Fatalf("%s, %v", b, err)
	}
	if b, _ := json.Marshal(newQueueWeights(nil)); string(b) != `{}` {
		t.Fatalf("empty: %s", b)
	}
}
