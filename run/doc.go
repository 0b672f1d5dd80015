// Package run is the home of a run's lifecycle parts, each a package of
// its own with its own tests, that the job handlers in jobs call: today
// run/webhook (the delivery of a run's end) and run/monitor (the app's
// cron passes). The feeder, the supervisor, cancel and the retry of
// failed rows still live in jobs.
package run
