// Command testworker is a worker binary with diagnostic jobs, for tests and
// benchmarks of the Sidekiq layer (not shipped):
//
//	Pallarel::NoopJob     does nothing
//	Pallarel::RecordJob   SADDs its jid to the Redis set "testworker:done" and
//	                      INCRs "testworker:runs:<jid>"
//	Pallarel::SleepJob    sleeps args[0] milliseconds, then records like RecordJob
//	Pallarel::FailJob     returns an error with args[0] as its message
package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/pallarel/pallarel/internal/workercmd"
	"github.com/pallarel/pallarel/sidekiq"
)

func main() {
	os.Exit(workercmd.Main(context.Background(), "test", os.Args[1:], os.LookupEnv, os.Stderr, setup))
}

func setup(ctx context.Context, env *workercmd.Env) (func(), error) {
	record := func(ctx context.Context, j *sidekiq.Job) error {
		c, err := env.Pool.GetContext(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		c.Send("MULTI")
		c.Send("SADD", "testworker:done", j.JID)
		c.Send("INCR", "testworker:runs:"+j.JID)
		_, err = c.Do("EXEC")
		return err
	}
	reg := env.Registry
	return nil, errors.Join(
		reg.Register(func(context.Context, *sidekiq.Job) error { return nil }, "Pallarel::NoopJob"),
		reg.Register(record, "Pallarel::RecordJob"),
		reg.Register(func(ctx context.Context, j *sidekiq.Job) error {
			var ms int
			if err := j.ScanArgs(&ms); err != nil {
				return err
			}
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
			return record(ctx, j)
		}, "Pallarel::SleepJob"),
		reg.Register(func(ctx context.Context, j *sidekiq.Job) error {
			var msg string
			if err := j.ScanArgs(&msg); err != nil {
				return err
			}
			return errors.New(msg)
		}, "Pallarel::FailJob"),
	)
}
