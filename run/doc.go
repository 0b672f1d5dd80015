// Package run is the home of a run's lifecycle parts, each a package of
// its own with its own tests, that the job handlers in jobs call: today
// run/webhook (the delivery of a run's end), run/monitor (the app's
// cron passes) and run/lease (the claims that keep a run's feeder and the
// supervisor to one process). The feeder, the supervisor, cancel and the retry of
// failed rows still live in jobs.
package run
