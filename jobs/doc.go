// Package jobs holds the job classes of the CSV report pipeline, registered
// under the wire names contract declares, so that either side (Rails or Go)
// can enqueue them:
//
//	SplitCsvJob                ActiveJob, queue "report": [csv, type, report_id]
//	Report::ProcessCsvRowJob   Sidekiq job, token queue: [row_hash, type, report_id, path, token]
//	                           or, for a Go-consumed run, [row_ref, type, report_id, path, token, "pallarel:row-ref:v1"] (rowref.go)
//	Report::FinalizeReportJob  Sidekiq job, token queue: [path, type, report_id, token, interval_sec, max_wait_sec, started_at]
//	IdleShutdownJob            ActiveJob: [token]
//	Pallarel::RunWebhookJob    ours, queue "report": [url, body]
//	Pallarel::CancelCleanupJob ours, queue "report": [token]
//
// The handlers decode their arguments and call the pipeline. It owns a
// run's lifecycle: the feeder pushing rows a window at a time (feeder.go),
// the supervisor that resumes and relaunches (supervisor.go), cancel
// (cancel.go), and End (end.go), the one transition every ending of a run
// goes through; it wires the parts under run/: "Retry failed rows"
// (retryrows.go), the monitors the Rails app ran from cron (monitor.go),
// the webhook (webhook.go) and the leases. Close joins the goroutines it
// owns.
//
// It owns no names of the contract (contract does) and no Redis key of the
// row ledger (ledger does). Nothing but cmd/* and internal/* may import it:
// server and retention reach a run through contract and models.
package jobs
