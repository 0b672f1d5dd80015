package jobs_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/pallarel/pallarel/launcher"
)

// A run whose queue holds work and no live worker says so on its page from
// the supervisor's first pass; ResumeWorkers launches its worker again at
// once, without the launch grace or a relaunch counted.
func TestWaitingRunSaysWhyAndResumesAtOnce(t *testing.T) {
	var mu sync.Mutex
	var launched []launcher.Request
	e := newEnvWith(t, envOptions{launch: func(_ context.Context, req launcher.Request) error {
		mu.Lock()
		launched = append(launched, req)
		mu.Unlock()
		return nil
	}})
	_, _, token := splitWithoutWorkerIn(t, e, 10)
	ctx := context.Background()
	if err := e.pipeline.Supervise(ctx); err != nil {
		t.Fatal(err)
	}
	st := e.status(token)
	if !strings.Contains(st.StateReason, "no live worker on queue "+e.queue(token)) {
		t.Fatalf("state reason %q: the page does not say why the run waits", st.StateReason)
	}
	mu.Lock()
	before := len(launched)
	mu.Unlock()
	n, err := e.pipeline.ResumeWorkers(ctx)
	if err != nil || n != 1 {
		t.Fatalf("ResumeWorkers = %d, %v; want the run's worker", n, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(launched) != before+1 || launched[len(launched)-1].Queue != e.queue(token) {
		t.Fatalf("launches %+v: want one more on %s", launched, e.queue(token))
	}
	if st := e.status(token); st.LaunchAttempts != 0 {
		t.Errorf("resume counted as relaunch %d", st.LaunchAttempts)
	}
}
