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
	"strings"
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
	// Detach lets workers outlive this process. By default (false) each
	// worker gets SIGTERM when this process dies, even by SIGKILL (Linux
	// parent-death signal), so no worker is left behind by a crashed or
	// killed server; Stop and Close reach the whole process group anyway.
	Detach bool
}

// LaunchedByEnv is set to "local" in the environment of the workers Local
// starts, so a worker knows its own task ID is "local-<its pid>" (see Self).
const LaunchedByEnv = "PALLAREL_LAUNCHED_BY"

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
	// exit is the process's exit status, set before done is closed.
	exit   string
	exitAt time.Time
}

var (
	_ Launcher = (*Local)(nil)
	_ Watcher  = (*Local)(nil)
)

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

// Launch implements Launcher. A live process for the same token is reused,
// unless req.Extra asks for one more.
func (l *Local) Launch(ctx context.Context, req Request) (Task, error) {
	if err := req.validate(); err != nil {
		return Task{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, p := range l.procs {
		if !p.exited() {
			if p.token == req.Token && !req.Extra {
				return p.task, nil
			}
			continue
		}
		// An exited worker is kept for TaskState for an hour.
		if time.Since(p.exitAt) > time.Hour {
			delete(l.procs, id)
		}
	}
	args := expand(l.cfg.Command, req)
	// Not CommandContext: the worker outlives the request that launched it.
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(append(os.Environ(), l.cfg.Env...), "TOKEN="+req.Token, "QUEUE="+req.Queue, LaunchedByEnv+"=local")
	cmd.Stdout, cmd.Stderr = l.cfg.Stdout, l.cfg.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !l.cfg.Detach {
		setParentDeathSignal(cmd.SysProcAttr)
	}
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
		p.exit, p.exitAt = exitStatus(cmd, err), time.Now()
		l.log.Info("local worker exited", "token", p.token, "task", p.task.ID, "status", p.exit)
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

// exitStatus says how a worker ended: "exit status 2", "signal: killed".
func exitStatus(cmd *exec.Cmd, err error) string {
	if cmd.ProcessState != nil {
		return cmd.ProcessState.String()
	}
	if err != nil {
		return err.Error()
	}
	return "exited"
}

// TaskState implements Watcher: a worker this launcher started is running
// until its process exits, then stopped with its exit status. An unknown
// task ID (another process's launcher on this machine, a forgotten one) is
// running while a process with its pid exists, so every launching process
// counts the same workers against the caps.
func (l *Local) TaskState(ctx context.Context, task Task) (TaskState, error) {
	l.mu.Lock()
	p := l.procs[task.ID]
	l.mu.Unlock()
	if p != nil {
		if p.exited() {
			return TaskState{Reason: "worker " + p.exit}, nil
		}
		return TaskState{Running: true}, nil
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(task.ID, "local-"))
	if err == nil && strings.HasPrefix(task.ID, "local-") && pid > 0 && syscall.Kill(pid, 0) == nil {
		return TaskState{Running: true}, nil
	}
	return TaskState{Reason: "no such local worker " + task.ID}, nil
}

// Stop implements Launcher: SIGTERM to the process group, SIGKILL after
// StopGrace, then wait for the exit. Unknown or exited tasks are fine.
func (l *Local) Stop(ctx context.Context, task Task, reason string) error {
	l.mu.Lock()
	p := l.procs[task.ID]
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
