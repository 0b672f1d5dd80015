package jobs_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/models"
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
	ctx := context.Background()
	id := e.newReport(models.ReportTypePDF)
	var csv strings.Builder
	csv.WriteString("id,v\n")
	for i := 1; i <= 50; i++ {
		fmt.Fprintf(&csv, "r%d,%d\n", i, i)
	}
	e.split(csv.String(), "pdf", id)
	var token string
	// The window is full (rows wait at the gate): the feeder polls it.
	waitFor(t, 20*time.Second, "the feeder waiting on a full window", func() bool {
		rep, _ := e.models.ReportByID(ctx, id)
		if token = rep.Token; token == "" {
			return false
		}
		return e.redisInt("EXISTS", contract.FeederKey(token)) == 1 && e.redisInt("LLEN", "queue:"+e.queue(token)) > 0
	})
	e.pipeline.Close()
	if n := e.redisInt("EXISTS", contract.FeederKey(token)); n != 0 {
		t.Fatalf("a feeder still holds its lease after Close")
	}
}
