package launcher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// DefaultStopGrace is how long Local waits after SIGTERM before SIGKILL.
const DefaultStopGrace = 30 * time.Second

// LocalConfig says which worker process Local starts.
type LocalConfig struct {
	// Command is the worker command line; "{queue}" and "{token}" are
	// substituted, e.g. ["/path/to/worker", "-q", "{queue}", "-c", "10"]. Required.
	Command []string
	// Env is added to this process's environment, after which TOKEN and
	// QUEUE are set as on ECS.
	Env []string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// StopGrace is the SIGTERM → SIGKILL delay. Defaults to 30s.
	StopGrace time.Duration
	// Stdout and Stderr receive the worker's output. Default os.Stderr.
	Stdout, Stderr io.Writer
}

// Local runs one worker process per token on this machine, each in its
// own process group so Stop reaches its children too.
type Local struct {
	cfg LocalConfig
	log *slog.Logger

	mu    sync.Mutex
	procs map[string]*localProc // by task id
}

type localProc struct {
	token string
	cmd   *exec.Cmd
	done  chan struct{} // closed when Wait returned
	task  Task
}

var _ Launcher = (*Local)(nil)

// NewLocal returns a Local launcher.
func NewLocal(cfg LocalConfig) (*Local, error) {
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, errors.New("local launcher: command is required")
	}
	cfg.StopGrace = cmp.Or(cfg.StopGrace, DefaultStopGrace)
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stderr
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	return &Local{cfg: cfg, log: cmp.Or(cfg.Logger, slog.Default()), procs: map[string]*localProc{}}, nil
}

// Launch implements Launcher. A live process for the same token is reused.
func (l *Local) Launch(ctx context.Context, req Request) (Task, error) {
	if err := req.validate(); err != nil {
		return Task{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.procs {
		if p.token == req.Token && !p.exited() {
			return p.task, nil
		}
	}
	args := expand(l.cfg.Command, req)
	// Not CommandContext: the worker outlives the request that launched it.
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(append(os.Environ(), l.cfg.Env...), "TOKEN="+req.Token, "QUEUE="+req.Queue)
	cmd.Stdout, cmd.Stderr = l.cfg.Stdout, l.cfg.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return Task{}, fmt.Errorf("local launch %s: %w", args[0], err)
	}
	p := &localProc{
		token: req.Token,
		cmd:   cmd,
		done:  make(chan struct{}),
		task:  Task{ID: "local-" + strconv.Itoa(cmd.Process.Pid), StartedAt: time.Now()},
	}
	go func() {
		err := cmd.Wait() // reaps the child: no zombies
		l.log.Info("local worker exited", "token", p.token, "task", p.task.ID, "err", err)
		close(p.done)
	}()
	l.procs[p.task.ID] = p
	l.log.InfoContext(ctx, "started local worker", "token", req.Token, "queue", req.Queue, "task", p.task.ID)
	return p.task, nil
}

func (p *localProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop implements Launcher: SIGTERM to the process group, SIGKILL after
// StopGrace, then wait for the exit. Unknown or exited tasks are fine.
func (l *Local) Stop(ctx context.Context, task Task, reason string) error {
	l.mu.Lock()
	p := l.procs[task.ID]
	delete(l.procs, task.ID)
	l.mu.Unlock()
	if p == nil {
		return nil
	}
	return l.stop(ctx, p, reason)
}

func (l *Local) stop(ctx context.Context, p *localProc, reason string) error {
	if p.exited() {
		return nil
	}
	pgid := -p.cmd.Process.Pid
	l.log.InfoContext(ctx, "stopping local worker", "token", p.token, "task", p.task.ID, "reason", reason)
	if err := syscall.Kill(pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("local stop %s: %w", p.task.ID, err)
	}
	grace := time.NewTimer(l.cfg.StopGrace)
	defer grace.Stop()
	select {
	case <-p.done:
		return nil
	case <-grace.C:
	case <-ctx.Done():
	}
	l.log.WarnContext(ctx, "local worker ignored SIGTERM, killing", "task", p.task.ID)
	if err := syscall.Kill(pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("local kill %s: %w", p.task.ID, err)
	}
	<-p.done // SIGKILL cannot be ignored; Wait returns promptly
	return nil
}

// Running returns the ids of workers still running.
func (l *Local) Running() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []string
	for id, p := range l.procs {
		if !p.exited() {
			ids = append(ids, id)
		}
	}
	return ids
}

// Close stops every worker this launcher started and waits for them.
func (l *Local) Close() error {
	l.mu.Lock()
	procs := l.procs
	l.procs = map[string]*localProc{}
	l.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, 0, len(procs))
	var mu sync.Mutex
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.stop(context.Background(), p, "launcher closing"); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
