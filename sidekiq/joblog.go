package sidekiq

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// SummaryInterval is how often a quiet class's per-queue summary is logged
// while its jobs run; a last one is logged when the server stops.
const SummaryInterval = 30 * time.Second

// jobLog writes Sidekiq's one INFO line per job ("done", or WARN "fail").
// Classes registered with Registry.LogQuietly log those lines at DEBUG
// instead, and one INFO "jobs summary" line per queue every
// SummaryInterval and at stop: a CSV run of 200,000 row jobs on its own
// queue reads as a few lines, not 200,000.
type jobLog struct {
	log   *slog.Logger
	quiet func(class string) bool
	now   func() time.Time

	mu   sync.Mutex
	sums map[summaryKey]*jobSummary
}

type summaryKey struct{ class, queue string }

type jobSummary struct {
	done, failed           int64 // since the last summary line
	totalDone, totalFailed int64
	busy                   time.Duration // summed run time since the last line
	since                  time.Time     // start of the current period
}

// done and fail take the job's DisplayClass, which the processor has at hand.
func (l *jobLog) done(job *Job, class, queue string, took time.Duration) {
	level := slog.LevelInfo
	if l.quiet(job.HandlerClass()) {
		level = slog.LevelDebug
		l.count(class, queue, took, false)
	}
	// Checked first: building the line costs allocations on every job.
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, "done", "jid", job.JID, "class", class, "queue", queue, "elapsed", elapsedSeconds(took))
	}
}

func (l *jobLog) fail(job *Job, class, queue string, took time.Duration, err error, outcome string) {
	level := slog.LevelWarn
	if l.quiet(job.HandlerClass()) {
		level = slog.LevelDebug
		l.count(class, queue, took, true)
	}
	l.log.Log(context.Background(), level, "fail", "jid", job.JID, "class", class, "queue", queue,
		"elapsed", elapsedSeconds(took), "err", err, "outcome", outcome)
}

// elapsedSeconds is job_logger.rb's elapsed: seconds with 3 decimals.
func elapsedSeconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

func (l *jobLog) count(class, queue string, took time.Duration, failed bool) {
	now := l.now()
	l.mu.Lock()
	if l.sums == nil {
		l.sums = map[summaryKey]*jobSummary{}
	}
	k := summaryKey{class, queue}
	s := l.sums[k]
	if s == nil {
		s = &jobSummary{since: now}
		l.sums[k] = s
	}
	if failed {
		s.failed++
		s.totalFailed++
	} else {
		s.done++
		s.totalDone++
	}
	s.busy += took
	due := now.Sub(s.since) >= SummaryInterval
	var line []any
	if due {
		line = s.line(k, now)
	}
	l.mu.Unlock()
	if line != nil {
		l.log.Info("jobs summary", line...)
	}
}

// line renders the summary and starts a new period; call with l.mu held.
func (s *jobSummary) line(k summaryKey, now time.Time) []any {
	line := []any{"class", k.class, "queue", k.queue, "done", s.done, "failed", s.failed,
		"period", now.Sub(s.since).Round(time.Millisecond).String(),
		"busy", s.busy.Round(time.Millisecond).String(),
		"total_done", s.totalDone, "total_failed", s.totalFailed}
	s.done, s.failed, s.busy, s.since = 0, 0, 0, now
	return line
}

// flush logs the summaries with activity since their last line and
// forgets them (called at stop).
func (l *jobLog) flush() {
	now := l.now()
	l.mu.Lock()
	var lines [][]any
	for k, s := range l.sums {
		if s.done+s.failed > 0 {
			lines = append(lines, s.line(k, now))
		}
	}
	l.sums = nil
	l.mu.Unlock()
	for _, line := range lines {
		l.log.Info("jobs summary", line...)
	}
}
