package contract

// Storage keys of a run's files, as the Rails app names them.

// UploadKey is where an upload's CSV is stored: uploads/<token>.csv.
func UploadKey(token string) string { return "uploads/" + token + ".csv" }

// TemplateKey is where an upload's XLSX template is stored: templates/<token>.xlsx.
func TemplateKey(token string) string { return "templates/" + token + ".xlsx" }

// ResultKey is where a token's ZIP is stored, locally or in S3: reports/<token>.zip.
func ResultKey(token string) string { return "reports/" + token + ".zip" }

// RowKeyPrefix is where row files of a token are stored: rows/<token>/.
func RowKeyPrefix(token string) string { return "rows/" + token + "/" }

// ReportDir is the path argument of the row and finalize jobs, as the
// Rails app passes it: /tmp/reports/<token>.
func ReportDir(token string) string { return "/tmp/reports/" + token }

// Redis keys of ours. Each starts with "pallarel:" so Ruby Sidekiq, its
// API and its Web UI never read them. The README's key table lists them.
const keyPrefix = "pallarel:"

// The row ledger (ledger/): bitmaps and counts of a run's recorded rows.
func RecordedKey(token string) string { return keyPrefix + "recorded:" + token }
func FailedKey(token string) string   { return keyPrefix + "failed:" + token }
func CommitsKey(token string) string  { return keyPrefix + "commits:" + token }
func PacksKey(token string) string    { return keyPrefix + "packs:" + token }
func ErrorsKey(token string) string   { return keyPrefix + "errors:" + token }
func CountKey(token string) string    { return keyPrefix + "count:" + token }
func RowsKey(token string) string     { return keyPrefix + "rows:" + token }
func SplitKey(token string) string    { return keyPrefix + "split:" + token }
func TotalKey(token string) string    { return keyPrefix + "total:" + token }

// BooksKey remembers that Ruby keeps a run's books; OrderKey numbers a Ruby
// split's rows (jid → row, "#" → the last number).
func BooksKey(token string) string { return keyPrefix + "books:" + token }
func OrderKey(token string) string { return keyPrefix + "order:" + token }

// TrackedKey is the set of tokens with Go state in Redis whose end Go may
// have to see from the database (a Ruby finalizer deleting the status row).
const TrackedKey = keyPrefix + "runs"

// RetryLockKey is held while the failed rows of a run are retried.
func RetryLockKey(token string) string { return keyPrefix + "retry:" + token }

// LegacyLedgerKeys are the keys of the ledger before packs (pallarel:ledger
// and pallarel:names), dropped when found.
func LegacyLedgerKeys(token string) []string {
	return []string{keyPrefix + "ledger:" + token, keyPrefix + "names:" + token}
}

// FeederKey is the lease of the process feeding a run's rows.
func FeederKey(token string) string { return keyPrefix + "feeder:" + token }

// WebhookSentKey marks the run end last delivered to its webhook.
func WebhookSentKey(token string) string { return keyPrefix + "webhook:" + token }

// SupervisorKey holds the acting run supervisor's lease.
const SupervisorKey = keyPrefix + "supervisor"

// IdempotencyKey is the key of a client's Idempotency-Key, given hashed.
func IdempotencyKey(hashed string) string { return keyPrefix + "idempotency:" + hashed }

// SessionKey keeps a /login session alive (logout deletes it), given the
// hex of its id's hash.
func SessionKey(hashed string) string { return keyPrefix + "session:" + hashed }

// The token-worker fleet's keys (launcher/fleet), shared by every process
// that launches workers: a hash of the workers counted against the caps, a
// sorted set of the runs waiting their turn, and a hash of when each
// waiting run last asked.
const (
	FleetSlotsKey   = keyPrefix + "fleet:slots"
	FleetWaitingKey = keyPrefix + "fleet:waiting"
	FleetAskedKey   = keyPrefix + "fleet:asked"
)
