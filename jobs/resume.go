package jobs

import (
	"context"
	"fmt"

	"github.com/pallarel/pallarel/launcher"
)

// ResumeWorkers launches at once the worker of every unfinished run that
// had one. A server whose token workers run in its own process calls it as
// it starts: those workers died with its previous run, so waiting out the
// supervisor's launch grace (meant for a task that may still be starting)
// would only leave the run idle. It is not a relaunch: the run's relaunch
// budget is untouched. It returns how many workers it launched.
func (p *Pipeline) ResumeWorkers(ctx context.Context) (int, error) {
	runs, err := p.d.DB.UnfinishedStatuses(ctx, 1000)
	if err != nil {
		return 0, fmt.Errorf("resume workers: %w", err)
	}
	n := 0
	for _, st := range runs {
		if st.WorkerStartedAt == nil {
			continue // never launched: its split launches it
		}
		queue, err := p.tokenQueue(st.Token)
		if err != nil {
			return n, err
		}
		task, err := p.d.Launcher.Launch(ctx, launcher.Request{Token: st.Token, Queue: queue})
		if err != nil {
			p.log.Error("resume worker", "token", st.Token, "queue", queue, "err", err)
			p.warnIf(p.d.DB.SetState(ctx, st.Token, st.RunState(), "waiting: the worker could not be started again: "+err.Error()), "SetState")
			continue
		}
		if task.ID != "" {
			if err := p.d.DB.RecordWorker(ctx, st.Token, task.ID, task.StartedAt); err != nil {
				return n, err
			}
		}
		p.log.Info("worker resumed with the server", "token", st.Token, "queue", queue, "task", task.ID)
		n++
	}
	return n, nil
}
