package jobs_test

import (
	"testing"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/render"
)

// Close cancels the feeders and waits for them: when it returns, no
// feeder of this process holds a run's lease.
func TestCloseJoinsFeeders(t *testing.T) {
	t.Parallel()
	gate := &gateRenderer{free: 0, open: make(chan struct{})}
	defer close(gate.open)
	e := newEnvWith(t, envOptions{renderers: []render.Renderer{gate}, batchSize: 2, workers: 1, timeout: time.Second,
		deps: func(d *jobs.Deps) { d.SplitWindow = 4 }})
	// The window is full (rows wait at the gate): the feeder polls it.
	_, token := e.gatedRun(50, 0)
	waitFor(t, 20*time.Second, "the feeder waiting on a full window", func() bool {
		return e.redisInt("EXISTS", contract.FeederKey(token)) == 1
	})
	e.pipeline.Close()
	if n := e.redisInt("EXISTS", contract.FeederKey(token)); n != 0 {
		t.Fatalf("a feeder still holds its lease after Close")
	}
}
