package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/sidekiq"
)

// InProcess runs Sidekiq servers inside this process: the all-in-one mode's
// `report` worker and one worker per token, started by the launcher as
// tokens appear and stopped when their report is done.
type InProcess struct {
	Pool        *redis.Pool
	Concurrency int
	Dialect     sidekiq.Dialect
	IdleTimeout time.Duration
	Log         *slog.Logger
	// PrivateRedis: Redis is this process's own (all-in-one mode), so a
	// worker of a previous run of it is known dead at once
	// (sidekiq.Options.PrivateRedis).
	PrivateRedis bool

	pipeline *jobs.Pipeline
	mu       sync.Mutex
	servers  map[string]*inprocServer // by task id
	wg       sync.WaitGroup
	closed   bool
}

type inprocServer struct {
	srv  *sidekiq.Server
	done chan struct{}
}

// SetPipeline gives the jobs to run; call it before Launch or Start.
func (p *InProcess) SetPipeline(pl *jobs.Pipeline) { p.pipeline = pl }

// Launcher adapts InProcess to the launcher interface.
func (p *InProcess) Launcher() launcher.Launcher {
	return launcher.Func{
		LaunchFunc: func(ctx context.Context, req launcher.Request) (launcher.Task, error) {
			id := "inproc:" + req.Queue
			return launcher.Task{ID: id, StartedAt: time.Now()},
				p.Start(id, []sidekiq.QueueWeight{{Name: req.Queue}}, p.IdleTimeout)
		},
		StopFunc: func(ctx context.Context, task launcher.Task, reason string) error {
			p.Stop(task.ID, reason)
			return nil
		},
	}
}

// Start runs a server on queues under the name id, unless one runs already.
func (p *InProcess) Start(id string, queues []sidekiq.QueueWeight, idle time.Duration) error {
	return p.StartWith(id, queues, idle, p.Concurrency)
}

// StartWith is Start with its own concurrency (the webhook deliveries').
func (p *InProcess) StartWith(id string, queues []sidekiq.QueueWeight, idle time.Duration, concurrency int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("start %s: shutting down", id)
	}
	if p.pipeline == nil || p.Pool == nil {
		return fmt.Errorf("start %s: no pipeline or Redis pool yet (SetPipeline and Pool come first)", id)
	}
	if p.servers == nil {
		p.servers = map[string]*inprocServer{}
	}
	if old, ok := p.servers[id]; ok {
		select {
		case <-old.srv.Stopping():
			// It is shutting down (its run ended, or idle): a new run on
			// the same queue (a retry of failed rows) needs a new one.
		default:
			return nil
		}
	}
	reg := sidekiq.NewRegistry()
	if err := p.pipeline.Register(reg); err != nil {
		return err
	}
	opts := sidekiq.Options{Queues: queues, Concurrency: concurrency, Dialect: p.Dialect, IdleTimeout: idle, Logger: p.Log, PrivateRedis: p.PrivateRedis}
	p.pipeline.ServerOptions(&opts)
	srv, err := sidekiq.NewServer(p.Pool, reg, opts)
	if err != nil {
		return err
	}
	s := &inprocServer{srv: srv, done: make(chan struct{})}
	p.servers[id] = s
	p.wg.Go(func() {
		defer close(s.done)
		if err := srv.Run(context.Background()); err != nil {
			p.Log.Error("in-process worker", "worker", id, "err", err)
		}
		p.mu.Lock()
		if p.servers[id] == s {
			delete(p.servers, id)
		}
		p.mu.Unlock()
	})
	return nil
}

// Stop asks the named server to stop gracefully; it does not wait, since a
// job of that very server may be the one asking.
func (p *InProcess) Stop(id, reason string) {
	p.mu.Lock()
	s := p.servers[id]
	p.mu.Unlock()
	if s != nil {
		p.Log.Info("stopping in-process worker", "worker", id, "reason", reason)
		s.srv.Stop()
	}
}

// Running lists the ids of the servers running now.
func (p *InProcess) Running() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.servers))
	for id := range p.servers {
		out = append(out, id)
	}
	return out
}

// Close stops every server and waits for them.
func (p *InProcess) Close() error {
	p.mu.Lock()
	p.closed = true
	for _, s := range p.servers {
		s.srv.Stop()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}
