package app

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/sidekiq"
)

// InProcess runs Sidekiq servers inside this process: the all-in-one mode's
// `report` worker and one worker per token, started by the launcher as
// tokens appear and stopped when their report is done. They are capsules
// of one Sidekiq process entry (sidekiq.SharedProcess), as Sidekiq 7+ runs
// several capsules in one process: the Web UI lists this process once, with
// its RSS once, and its Quiet and Stop reach every worker of it.
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
	proc     *sidekiq.SharedProcess   // the entry every server beats in
	servers  map[string]*inprocServer // by task id
	wg       sync.WaitGroup
	closed   bool
	extra    atomic.Int64 // numbers the extra workers' ids
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
			if req.Extra {
				// One more server on the run's queue (a run spread over
				// several workers).
				id += "#" + strconv.FormatInt(p.extra.Add(1), 10)
			}
			return launcher.Task{ID: id, StartedAt: time.Now()},
				p.Start(id, []sidekiq.QueueWeight{{Name: req.Queue}}, p.IdleTimeout)
		},
		StopFunc: func(ctx context.Context, task launcher.Task, reason string) error {
			p.Stop(task.ID, reason)
			return nil
		},
		StateFunc: func(ctx context.Context, task launcher.Task) (launcher.TaskState, error) {
			if p.running(task.ID) {
				return launcher.TaskState{Running: true}, nil
			}
			return launcher.TaskState{Reason: "in-process worker " + task.ID + " is not running"}, nil
		},
	}
}

// running reports whether the named server runs and is not stopping.
func (p *InProcess) running(id string) bool {
	p.mu.Lock()
	s := p.servers[id]
	p.mu.Unlock()
	if s == nil {
		return false
	}
	select {
	case <-s.srv.Stopping():
		return false
	default:
		return true
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
	if p.proc == nil {
		proc, err := sidekiq.NewSharedProcess(p.Pool, sidekiq.SharedProcessOptions{Dialect: p.Dialect, Logger: p.Log})
		if err != nil {
			return fmt.Errorf("start %s: %w", id, err)
		}
		p.proc = proc
	}
	reg := sidekiq.NewRegistry()
	if err := p.pipeline.Register(reg); err != nil {
		return err
	}
	opts := sidekiq.Options{Queues: queues, Concurrency: concurrency, Dialect: p.Dialect, IdleTimeout: idle, Logger: p.Log,
		PrivateRedis: p.PrivateRedis, Process: p.proc, Capsule: id}
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
