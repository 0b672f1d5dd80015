// Package rdb is the only code in the sidekiq package that spells Redis
// commands, key names and Lua scripts. Key names are Sidekiq's own (see
// lib/sidekiq/api.rb and launcher.rb); the few keys Pallarel adds start with
// "pallarel:" so Ruby Sidekiq, its API and its Web UI never read them.
package rdb

import "time"

// Sidekiq's fixed keys.
const (
	KeyQueues         = "queues"         // SET of queue names
	KeySchedule       = "schedule"       // ZSET, score = run-at epoch seconds
	KeyRetry          = "retry"          // ZSET, score = next attempt epoch seconds
	KeyDead           = "dead"           // ZSET, score = time of death epoch seconds
	KeyProcesses      = "processes"      // SET of process identities
	KeyStatProcessed  = "stat:processed" // lifetime counters
	KeyStatFailed     = "stat:failed"
	KeyProcessCleanup = "process_cleanup" // SET NX EX 60 lock for pruning processes
)

// Pallarel's own keys for reliable fetch.
const (
	// KeyInflightIndex is a SET of "<identity>|<queue>" pairs whose
	// in-flight lists may hold jobs; a live process recovers the lists of
	// identities whose heartbeat hash has expired.
	KeyInflightIndex = "pallarel:inflight"
)

// Capsule is the HASH that keeps a capsule alive (a Server that beats in
// another identity's process entry, Process): its own identity owns its
// in-flight lists, so the heartbeat of its process writes this key beside
// the process hash, with the same lifetime, holding "process" (the entry's
// identity). Sidekiq's API and Web UI never read it.
func Capsule(identity string) string { return "pallarel:capsule|" + identity }

// StatsTTL is how long daily stat keys live: 5 years, as Sidekiq sets.
const StatsTTL = 157680000

// ProcessTTL is the lifetime of a heartbeat hash and the work hash.
const ProcessTTL = 60

// Queue is the LIST key of a queue.
func Queue(name string) string { return "queue:" + name }

// Inflight is the per-process, per-queue LIST of jobs a process is running.
func Inflight(identity, queue string) string {
	return "pallarel:inflight|" + identity + "|" + queue
}

// InflightMember is the member of KeyInflightIndex for identity and queue.
func InflightMember(identity, queue string) string { return identity + "|" + queue }

// Work is the hash of running jobs that Sidekiq 6.4.2+ reads.
func Work(identity string) string { return identity + ":work" }

// Workers is the hash of running jobs that Sidekiq 6.4.1 and older read.
func Workers(identity string) string { return identity + ":workers" }

// Signals is the LIST the Web UI pushes TSTP/TERM/TTIN onto.
func Signals(identity string) string { return identity + "-signals" }

// StatDaily is the daily counter key for "processed" or "failed" (UTC day).
func StatDaily(kind string, t time.Time) string {
	return "stat:" + kind + ":" + t.UTC().Format("2006-01-02")
}
