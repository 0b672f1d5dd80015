package jobs

import (
	"context"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/run/monitor"
	"github.com/pallarel/pallarel/sidekiq"
)

// RunMonitors runs, inside the `report` worker, the run supervisor and what
// the Rails app ran from cron (run/monitor), until ctx ends; it returns once
// both have stopped.
func (p *Pipeline) RunMonitors(ctx context.Context, every time.Duration) {
	supervised := make(chan struct{})
	go func() { defer close(supervised); p.RunSupervisor(ctx) }()
	defer func() { <-supervised }()
	p.monitors.Run(ctx, every)
}

// Monitors are the pipeline's cron passes (run/monitor).
func (p *Pipeline) Monitors() *monitor.Monitors { return p.monitors }

// RecordDeadRows records as failed every row job in the dead set whose row
// has no result yet: rows killed from the Web UI, or by a Ruby worker,
// never reach our death handler. It returns how many it recorded. First,
// the reference rows a Ruby worker refused go back inline
// (InlineRubyRejected): Ruby never ran them, so they are no failed rows.
func (p *Pipeline) RecordDeadRows(ctx context.Context) (int, error) {
	if _, err := p.InlineRubyRejected(ctx); err != nil {
		p.log.Warn("dead-letter monitor: rows Ruby refused as references", "err", err)
	}
	n := 0
	for start := 0; ; start += 500 {
		entries, err := p.d.API.SetEntries(ctx, sidekiq.DeadSet, start, 500)
		if err != nil {
			return n, err
		}
		for _, e := range entries {
			if e.Job == nil || (e.Job.HandlerClass() != contract.Row.Name && e.Job.HandlerClass() != "ProcessCsvRowJob") {
				continue
			}
			before, _ := p.ledger.Count(ctx, tokenOf(e.Job))
			p.rowDied(ctx, e.Job, deadError{e.Job.StringField("error_message")})
			if after, _ := p.ledger.Count(ctx, tokenOf(e.Job)); after > before {
				n++
			}
		}
		if len(entries) < 500 {
			return n, nil
		}
	}
}

func tokenOf(j *sidekiq.Job) string {
	args, err := j.Arguments()
	if err != nil || len(args) < 5 {
		return ""
	}
	var token string
	_ = unmarshalArg(args[4], &token)
	return token
}

type deadError struct{ msg string }

func (e deadError) Error() string {
	if e.msg == "" {
		return "job is in the dead set"
	}
	return e.msg
}
