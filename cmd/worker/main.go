// Command worker runs Pallarel's jobs from Redis as a Sidekiq process does,
// with Sidekiq's flags: worker -q NAME[,WEIGHT] ... -c N -t SECONDS -C sidekiq.yml.
// Settings come from the environment (see README); REDIS_URL as Sidekiq reads it.
package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/app"
	"github.com/pallarel/pallarel/internal/heapprofile"
	"github.com/pallarel/pallarel/internal/workercmd"
	"github.com/pallarel/pallarel/run/monitor"
	"github.com/pallarel/pallarel/run/webhook"
	"github.com/pallarel/pallarel/sidekiq"
)

var version = "dev"

func main() {
	stopProfile := cpuProfile(os.Getenv("PALLAREL_CPUPROFILE"))
	heapprofile.Start(context.Background(), os.Getenv("PALLAREL_HEAPPROFILE"))
	code := workercmd.Main(context.Background(), version, os.Args[1:], os.LookupEnv, os.Stderr, setup)
	stopProfile()
	os.Exit(code)
}

// cpuProfile writes a CPU profile of the whole run to prefix.<pid> when
// prefix is set (PALLAREL_CPUPROFILE): how the pipeline benchmark finds
// where a worker's time goes.
func cpuProfile(prefix string) (stop func()) {
	if prefix == "" {
		return func() {}
	}
	f, err := os.Create(fmt.Sprintf("%s.%d", prefix, os.Getpid()))
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "PALLAREL_CPUPROFILE:", err)
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

func setup(ctx context.Context, env *workercmd.Env) (func(), error) {
	cfg := env.Config
	// The jobs push through one client that runs the middleware a Setup
	// put in env.Options first; ServerOptions below adds the isolation
	// check for the server's own re-pushes.
	a, err := app.Open(ctx, cfg, env.Logger, app.Options{Pool: env.Pool, ClientMiddleware: env.Options.ClientMiddleware})
	if err != nil {
		return nil, err
	}
	if err := a.Pipeline.Register(env.Registry); err != nil {
		a.Close()
		return nil, err
	}
	a.Pipeline.ServerOptions(env.Options)
	names := make([]string, 0, len(env.Options.Queues))
	for _, q := range env.Options.Queues {
		names = append(names, q.Name)
	}
	// A worker on token queues only exits once its queues stay empty.
	tokenOnly := len(names) > 0
	for _, n := range names {
		tokenOnly = tokenOnly && a.Router.IsTokenQueue(n)
	}
	if tokenOnly && env.Options.IdleTimeout == 0 {
		env.Options.IdleTimeout = cfg.WorkerIdleTimeout
	}
	monitors, stop := context.WithCancel(ctx)
	monitorsDone := make(chan struct{})
	if slices.Contains(names, contract.TriggerQueue) {
		go func() { defer close(monitorsDone); a.Pipeline.RunMonitors(monitors, monitor.Interval) }()
	} else {
		close(monitorsDone)
	}
	stopHooks := func() {}
	if slices.Contains(names, contract.TriggerQueue) && !slices.Contains(names, webhook.Queue) {
		if stopHooks, err = startWebhookServer(ctx, env, a); err != nil {
			stop()
			<-monitorsDone
			a.Close()
			return nil, err
		}
	}
	// The monitors and the webhook server use Redis and the database: they
	// end before Close releases those.
	return func() { stopHooks(); stop(); <-monitorsDone; a.Close() }, nil
}

// startWebhookServer runs the webhook deliveries beside the report worker,
// as a server of their own on webhook.Queue with webhook.Concurrency
// processors and a pool of its own: a receiver that hangs holds one of
// those, never a processor that splits uploads.
func startWebhookServer(ctx context.Context, env *workercmd.Env, a *app.App) (stop func(), err error) {
	pool, err := sidekiq.NewPool(env.Config.RedisURL, webhook.Concurrency+5)
	if err != nil {
		return nil, err
	}
	reg := sidekiq.NewRegistry()
	if err := a.Pipeline.Register(reg); err != nil {
		pool.Close()
		return nil, err
	}
	opts := sidekiq.Options{Queues: []sidekiq.QueueWeight{{Name: webhook.Queue}}, Concurrency: webhook.Concurrency,
		Dialect: env.Options.Dialect, Logger: env.Logger, Timeout: 10 * time.Second}
	a.Pipeline.ServerOptions(&opts)
	srv, err := sidekiq.NewServer(pool, reg, opts)
	if err != nil {
		pool.Close()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Run(runCtx); err != nil {
			env.Logger.Error("webhook server", "err", err)
		}
	}()
	return func() { cancel(); <-done; pool.Close() }, nil
}
