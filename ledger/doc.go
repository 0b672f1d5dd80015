// Package ledger records how each row of a report ended (the row ledger:
// bitmaps in Redis, one per run) and stores finished rows in packs, a
// frame per commit (the packer), so the finalizer can read every row back.
//
// It owns the ledger's Redis keys (pallarel:recorded, failed, commits,
// packs, errors, count, rows and retry of a token) and the row files under
// rows/<token>/. It knows nothing of jobs, Sidekiq or the database: it
// imports storage and redigo, never jobs, sidekiq or models.
package ledger
