package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/config"
	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/internal/workercmd"
	"github.com/pallarel/pallarel/run/webhook"
	"github.com/pallarel/pallarel/sidekiq"
)

// webhookServer is the identity of the process serving the webhook queue,
// or "".
func webhookServer(t *testing.T, db *redistest.DB) string {
	t.Helper()
	ids, _ := redis.Strings(db.Do(t, "SMEMBERS", "processes"), nil)
	for _, id := range ids {
		info, _ := redis.String(db.Do(t, "HGET", id, "info"), nil)
		if strings.Contains(info, `"`+webhook.Queue+`"`) {
			return id
		}
	}
	return ""
}

// A report worker (-q report -q default) also serves the webhook queue, on
// a server of its own with webhook.Concurrency processors, and stops
// it with itself.
func TestReportWorkerServesWebhooks(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	cfg, err := config.Load(lookup(map[string]string{"REDIS_URL": db.URL(), "DATA_DIR": t.TempDir(), "LAUNCHER": "none"}))
	if err != nil {
		t.Fatal(err)
	}
	opts := &sidekiq.Options{Queues: []sidekiq.QueueWeight{{Name: contract.TriggerQueue}, {Name: "default"}}}
	env := &workercmd.Env{Config: cfg, Pool: db.Pool, Registry: sidekiq.NewRegistry(), Options: opts,
		Logger: slog.New(slog.DiscardHandler), Lookup: lookup(nil)}
	cleanup, err := setup(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var id string
	for id = webhookServer(t, db); id == ""; id = webhookServer(t, db) {
		if time.Now().After(deadline) {
			t.Fatal("no process serves the webhook queue beside the report worker")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c, _ := redis.Int(db.Do(t, "HGET", id, "concurrency"), nil); c != webhook.Concurrency {
		t.Errorf("webhook server concurrency %d, want %d", c, webhook.Concurrency)
	}
	cleanup()
	if id := webhookServer(t, db); id != "" {
		t.Errorf("the webhook server %s outlived the worker", id)
	}
}
