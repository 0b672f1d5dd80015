// Command benchworker is the worker of the engine benchmark: the same body
// as every Pallarel worker (internal/workercmd: CLI, reliable or basic fetch,
// processors, heartbeat) with one handler, Pallarel::NoopJob, that does
// nothing. A server middleware counts finished jobs in memory and a
// goroutine publishes the count to the Redis key "bench:done" every 5 ms,
// so the benchmark can stop its timer when jobs are done, not merely popped.
// bench/ruby/jobs.rb does exactly the same for Ruby Sidekiq.
// BENCH_CPUPROFILE=FILE writes a CPU profile of the whole run,
// BENCH_MEMPROFILE=FILE an allocation profile at exit;
// BENCH_LOG_LEVEL=warn|info|debug sets the engine's log level.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/pallarel/pallarel/internal/workercmd"
	"github.com/pallarel/pallarel/sidekiq"
)

func main() {
	os.Exit(workercmd.Main(context.Background(), "bench", os.Args[1:], os.LookupEnv, os.Stderr, setup))
}

func setup(ctx context.Context, env *workercmd.Env) (func(), error) {
	// BENCH_LOG_LEVEL=warn (bench/engine.sh's default) drops the INFO line
	// per job, as bench/ruby/jobs.rb does for Ruby at the same setting.
	if l, ok := env.Lookup("BENCH_LOG_LEVEL"); ok && l != "" {
		var level slog.Level
		if err := level.UnmarshalText([]byte(l)); err != nil {
			return nil, fmt.Errorf("BENCH_LOG_LEVEL: %w", err)
		}
		env.Options.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	var done atomic.Int64
	env.Options.ServerMiddleware = append(env.Options.ServerMiddleware,
		func(ctx context.Context, j *sidekiq.Job, next func(context.Context) error) error {
			err := next(ctx)
			done.Add(1)
			return err
		})
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		last := int64(-1)
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if n := done.Load(); n != last {
				c := env.Pool.Get()
				if _, err := c.Do("SET", "bench:done", n); err == nil {
					last = n
				}
				c.Close()
			}
		}
	}()
	stopProfile := func() {}
	if path, ok := env.Lookup("BENCH_CPUPROFILE"); ok && path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
	}
	if path, ok := env.Lookup("BENCH_MEMPROFILE"); ok && path != "" {
		stopCPU := stopProfile
		stopProfile = func() {
			stopCPU()
			if f, err := os.Create(path); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}
	}
	err := env.Registry.Register(func(context.Context, *sidekiq.Job) error { return nil }, "Pallarel::NoopJob")
	return func() { close(stop); <-finished; stopProfile() }, err
}
