// Package workercmd is the body of every worker binary: Sidekiq's command
// line, logging, Redis, OS signals and the server's lifetime. Binaries differ
// only in the handlers their Setup registers.
package workercmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/config"
	"github.com/pallarel/pallarel/sidekiq"
)

// Env is what a Setup gets to wire its handlers.
type Env struct {
	// Config is the environment, read and validated once by Main, with the
	// command line's --dialect in SidekiqDialect (flags override the
	// environment, as Sidekiq's cli.rb), so the server and the jobs' pushes
	// write one format.
	Config   config.Config
	Pool     *redis.Pool // on Config.RedisURL
	Registry *sidekiq.Registry
	// Options may be changed (middleware) before the server starts. A Setup
	// that pushes jobs builds its client with Options.ClientMiddleware
	// (app.Options.ClientMiddleware), so they run on its pushes too.
	Options *sidekiq.Options
	Logger  *slog.Logger
	// Lookup reads the binary's own variables (the benchmark's); the
	// application's are in Config.
	Lookup func(string) (string, bool)
}

// Setup registers handlers and middleware; the returned func releases what
// it opened.
type Setup func(ctx context.Context, env *Env) (func(), error)

// Main parses args, runs the server until a signal, and returns the exit
// code: 0 after a clean stop, 1 on a runtime error, 2 on a usage error.
// SIGTERM and SIGINT stop gracefully, SIGTSTP quiets, SIGTTIN logs what
// every processor is doing, as Sidekiq's cli.rb SIGNAL_HANDLERS.
func Main(ctx context.Context, version string, args []string, lookup func(string) (string, bool), stderr io.Writer, setup Setup) int {
	cli, err := sidekiq.ParseCLI(args, lookup, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return 2
	}
	if cli.Version {
		fmt.Fprintf(stderr, "pallarel worker %s (Sidekiq wire format %d)\n", version, cli.Options.Dialect)
		return 0
	}
	level := slog.LevelInfo
	if cli.Verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cli.Options.Logger = log
	// The environment is read and checked here, once; its errors never
	// print a password (config masks URLs).
	cfg, err := config.Load(lookup)
	if err != nil {
		fmt.Fprintf(stderr, "worker: configuration:\n%v\n", err)
		return 2
	}
	for _, w := range cfg.Warnings {
		log.Warn("configuration: " + w)
	}
	cfg.SidekiqDialect = int(cli.Options.Dialect)
	pool, err := sidekiq.NewPool(cfg.RedisURL, max(cli.Options.Concurrency, 5)+5)
	if err != nil {
		fmt.Fprintf(stderr, "worker: REDIS_URL: %v\n", err)
		return 2
	}
	defer pool.Close()
	env := &Env{
		Config:   cfg,
		Pool:     pool,
		Registry: sidekiq.NewRegistry(),
		Options:  &cli.Options,
		Logger:   log,
		Lookup:   lookup,
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cleanup, err := setup(ctx, env)
	if err != nil {
		log.Error("worker cannot start", "err", err)
		return 1
	}
	if cleanup != nil {
		defer cleanup()
	}
	srv, err := sidekiq.NewServer(pool, env.Registry, cli.Options)
	if err != nil {
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return 2
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTSTP, syscall.SIGTTIN)
	defer signal.Stop(sigs)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sigs:
				if s == syscall.SIGTSTP {
					srv.Quiet()
				} else {
					srv.DumpWork()
				}
			}
		}
	}()
	// With an idle timeout, a worker also exits when Redis has been
	// unreachable for longer than that (redis_watch.go).
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	redisLost := make(chan struct{})
	if idle := cli.Options.IdleTimeout; idle > 0 {
		go newRedisWatch(pool, idle, log).run(runCtx, func() { close(redisLost); stopRun() })
	}
	err = srv.Run(runCtx)
	select {
	case <-redisLost:
		log.Error("worker exits: Redis unreachable", "idle_timeout", cli.Options.IdleTimeout)
		return 1
	default:
	}
	if err != nil {
		log.Error("worker stopped with error", "err", err)
		return 1
	}
	return 0
}
