// Package contract names what the Rails app and Pallarel agree on, once:
// the job classes with their queues and Sidekiq options (as each Ruby
// class's sidekiq_options declares them), their arguments in wire order,
// the storage keys of a run's files and every Redis key of ours
// ("pallarel:*"), and the refusals of the run controls.
//
// It imports nothing of this module (only the standard library), so that
// server, retention, jobs and ledger can all use it without importing each
// other. The engine's own keys ("pallarel:inflight…", the reliable fetch's
// in-flight lists) stay in sidekiq/internal/rdb: sidekiq is the protocol
// package that could ship on its own and must not import the application.
package contract
