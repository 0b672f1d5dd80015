// Package sidekiq speaks Sidekiq's Redis protocol from Go, on redigo: Ruby
// Sidekiq (client, server, API) and the Sidekiq Web UI treat Go processes
// and Go-written jobs as their own, and Go runs jobs Rails enqueues. It
// imports only redigo, a YAML parser and the standard library.
//
// Where each part of Sidekiq lives here (Ruby file → Go file):
//
//	client.rb, job_util.rb        client.go     Push, PushBulk (one pipeline per batch), scheduling via Job.At
//	(job hash)                    payload.go    Job: known fields + every other key kept verbatim; Dialect
//	active_job adapter            activejob.go  both wrapper names, envelope, argument decoding/encoding
//	middleware/chain.rb           registry.go   Registry (class → Handler), ScanArgs, middleware, Kill/Discard
//	launcher.rb                   server.go     Server: Run, Quiet, Stop; shutdown order
//	manager.rb                    manager.go    manager: the processors and the one fetch loop that feeds them
//	processor.rb                  processor.go  one job: parse, middleware, handler, then settle through the fetcher
//	fetch.rb                      fetch.go      fetcher: basic or reliable fetch, batched; every settle write (ack, requeue, retry, dead)
//	(reliable fetch)              recoverer.go  dead processes' in-flight jobs and our own unsettled ones go back
//	job_retry.rb                  retry.go      Decide (a failed job's fate) and judge, apart from the writes; backoff, failure fields
//	(exception backtraces)        backtrace.go  error_backtrace lines from the handler's location and callers
//	job_logger.rb                 joblog.go     one INFO line per job; quiet classes: DEBUG + per-queue summary
//	metrics/tracking.rb           metrics.go    j|… execution counts, h|… run-time histograms (shared.rb)
//	scheduled.rb                  scheduled.go  poller, interval
//	launcher.rb (❤)               heartbeat.go  processes, <identity> hash, :work/:workers, signals, stats flush
//	api.rb                        api.go        Stats, queues, sorted sets, processes, workers, signals
//	api.rb (Queue, SortedSet)     queuework.go  one walk over a queue's jobs for QueueWork and PendingFor
//	capsule.rb, launcher.rb       capsule.go    SharedProcess: Servers of one OS process as capsules of one process entry
//	launcher.rb (run, stop)       parts.go      the background parts (heartbeat, metrics flusher, recoverer, poller): start/stop order and why
//	cli.rb                        cli.go        -q -c -t -C -e -g -v -V, REDIS_URL pool
//	config.rb (sidekiq.yml)       options.go    Options, queue order modes, sidekiq.yml with ERB ENV
//
// Redis keys it reads and writes are Sidekiq's own (no prefix): queues,
// queue:<name>, schedule, retry, dead, processes, <identity>,
// <identity>:work (and <identity>:workers for the 6.4.1 Web UI in
// Dialect6), <identity>-signals, stat:processed, stat:failed and their
// daily keys. Reliable fetch adds keys no Sidekiq reads:
//
//	pallarel:inflight                        SET of "<identity>|<queue>" pairs with in-flight lists
//	pallarel:inflight|<identity>|<queue>     LIST of the jobs that process runs now or has prefetched
//	pallarel:capsule|<identity>              HASH keeping a SharedProcess capsule (its own in-flight owner) alive
//
// A job is moved onto its process's list by the fetch script and removed
// when it ends, by an LREM sent ahead of the next fetch script in the same
// round trip, or at once while the fetch waits on empty queues; a
// failure's retry or dead write and the removal share one MULTI. With
// Options.Prefetch (default: adaptive, what the processors finish in 5 ms)
// the manager fetches jobs ahead of free processors; they sit on the list
// too, are not busy on /busy, and go back to the right end of their queue,
// in order, at once on quiet or stop. A dead process's lists go back to their queues once its heartbeat hash has
// expired. Sidekiq 8's format is written by default (integer-millisecond
// timestamps); Dialect7 and Dialect6 write float seconds. Both are read.
//
// The runtime (processor, poller, heartbeat) never uses the API types:
// both sit on internal/rdb, the only code that spells Redis commands.
package sidekiq
