// Command sleepworker is the Pallarel worker (cmd/worker's jobs, launcher
// and supervisor) with one more report type, "sleep": each row takes a
// fixed SLEEPWORKER_ROW_SLEEP (default 5ms) and writes the row as "text"
// does. A run's speed then depends on how many workers it has, not on the
// machine's cores: the scale-out tests (launcher/fleet) and bench
// (bench/cmd/scalebench) use it. Not shipped.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/app"
	"github.com/pallarel/pallarel/internal/workercmd"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/run/monitor"
)

func main() {
	os.Exit(workercmd.Main(context.Background(), "sleep", os.Args[1:], os.LookupEnv, os.Stderr, setup))
}

// Sleep is the renderer of report type "sleep".
type Sleep struct{ D time.Duration }

func (Sleep) Name() string { return "sleep" }
func (Sleep) Ext() string  { return ".txt" }

// Render waits D, then writes the row as Text does.
func (s Sleep) Render(ctx context.Context, w io.Writer, row render.Row) error {
	select {
	case <-time.After(s.D):
	case <-ctx.Done():
		return ctx.Err()
	}
	return render.Text{}.Render(ctx, w, row)
}

func setup(ctx context.Context, env *workercmd.Env) (func(), error) {
	d := 5 * time.Millisecond
	if v, ok := env.Lookup("SLEEPWORKER_ROW_SLEEP"); ok && v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return nil, fmt.Errorf("SLEEPWORKER_ROW_SLEEP: %w", err)
		}
	}
	a, err := app.Open(ctx, env.Config, env.Logger, app.Options{Pool: env.Pool, ClientMiddleware: env.Options.ClientMiddleware})
	if err != nil {
		return nil, err
	}
	if err := a.Renderers.Register(Sleep{D: d}); err != nil {
		a.Close()
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
	monitors, stop := context.WithCancel(ctx)
	monitorsDone := make(chan struct{})
	if slices.Contains(names, contract.TriggerQueue) {
		go func() { defer close(monitorsDone); a.Pipeline.RunMonitors(monitors, monitor.Interval) }()
	} else {
		close(monitorsDone)
	}
	return func() { stop(); <-monitorsDone; a.Close() }, nil
}
