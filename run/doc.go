// Package run names a run's states (State, Ending) and is the home of the
// run lifecycle's parts, each a package of its own with its own tests,
// that the job handlers in jobs call: today
// run/webhook (the delivery of a run's end), run/monitor (the app's
// cron passes), run/lease (the claims that keep a run's feeder and the
// supervisor to one process), run/retry ("Retry failed rows"),
// run/counts (a run's counts in the database, coalesced) and run/dataloss
// (a deleted queue told from Redis losing data). The
// feeder, the supervisor and cancel still live in jobs.
package run
