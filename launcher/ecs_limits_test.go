package launcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// strategyOf reads the capacity providers a RunTask body names.
func strategyOf(body map[string]any) string {
	var names []string
	cps, _ := body["capacityProviderStrategy"].([]any)
	for _, it := range cps {
		names = append(names, fmt.Sprint(it.(map[string]any)["capacityProvider"]))
	}
	return strings.Join(names, ",")
}

// After a Spot capacity failure the next RunTask runs on on-demand Fargate
// (Fargate does not fall back by itself); the first one asked for Spot.
func TestECSSpotShortageFallsBackToOnDemand(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.CapacityProviders = []CapacityProvider{{Name: "FARGATE_SPOT", Weight: 3}, {Name: "FARGATE", Weight: 1}}
	e, f, clk := newTestECS(t, cfg)
	f.SpotShortage = 100 // Spot stays short for the whole test
	task, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err != nil {
		t.Fatalf("launch with Spot short: %v", err)
	}
	var strategies []string
	for _, c := range f.Calls() {
		if c.Op == "RunTask" {
			strategies = append(strategies, strategyOf(c.Body))
		}
	}
	if fmt.Sprint(strategies) != "[FARGATE_SPOT,FARGATE FARGATE]" {
		t.Fatalf("RunTask strategies %v, want Spot first, then on-demand FARGATE only", strategies)
	}
	if tasks := f.Tasks(); len(tasks) != 1 || tasks[0].ARN != task.ID || strategyOf(tasks[0].Request) != "FARGATE" {
		t.Fatalf("tasks %+v, want the one on-demand task", tasks)
	}
	if len(clk.sleeps) != 1 {
		t.Fatalf("sleeps %v, want one backoff before the on-demand try", clk.sleeps)
	}
	// A strategy of Spot alone falls back to FARGATE too.
	cfg.CapacityProviders = []CapacityProvider{{Name: "FARGATE_SPOT", Weight: 1}}
	e, f, _ = newTestECS(t, cfg)
	f.SpotShortage = 100
	if _, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue}); err != nil {
		t.Fatal(err)
	}
	if got := strategyOf(f.Last("RunTask")); got != "FARGATE" {
		t.Fatalf("fallback strategy %q, want FARGATE", got)
	}
}

// The account's quota of concurrent tasks ("You've reached the limit on the
// number of tasks you can run concurrently") is retried with backoff, and
// the launch succeeds once a task ends within the attempts; past them the
// run waits (WaitError), without a failed launch.
func TestECSQuotaIsRetriedWithBackoff(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.MaxAttempts = 4
	e, f, clk := newTestECS(t, cfg)
	f.MaxRunning = 1
	first, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err != nil {
		t.Fatal(err)
	}
	// The quota is full: the other token's launch backs off, and the first
	// task ends during the second backoff.
	clk.onSleep = func(n int) {
		if n == 2 {
			if err := e.Stop(context.Background(), first, "done"); err != nil {
				t.Error(err)
			}
		}
	}
	second, err := e.Launch(context.Background(), Request{Token: "other-token", Queue: "report-other"})
	if err != nil {
		t.Fatalf("launch after the quota freed: %v", err)
	}
	if second.ID == first.ID || len(clk.sleeps) != 2 || clk.sleeps[1] <= clk.sleeps[0] {
		t.Fatalf("second %s, sleeps %v: want two growing backoffs, then a new task", second.ID, clk.sleeps)
	}
	clk.onSleep = nil
	_, err = e.Launch(context.Background(), Request{Token: "third-token", Queue: "report-third"})
	var we *WaitError
	if !errors.As(err, &we) || we.Ahead != -1 || !strings.Contains(err.Error(), "reached the limit on the number of tasks") {
		t.Fatalf("quota that stays full: err %v, want a WaitError", err)
	}
	if !strings.HasPrefix(err.Error(), WaitingPrefix+": ") {
		t.Fatalf("err %q does not start with %q", err, WaitingPrefix)
	}
}

// LaunchN starts extra workers for one token in RunTask calls of at most
// ten tasks (count's limit), each its own task with the token's startedBy.
func TestECSLaunchNBatchesByTen(t *testing.T) {
	t.Parallel()
	e, f, _ := newTestECS(t, baseConfig())
	if _, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue}); err != nil {
		t.Fatal(err)
	}
	tasks, err := e.LaunchN(context.Background(), Request{Token: testToken, Queue: testQueue, Extra: true}, 23)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 23 {
		t.Fatalf("%d tasks, want 23", len(tasks))
	}
	var counts []string
	for _, c := range f.Calls() {
		if c.Op == "RunTask" {
			counts = append(counts, fmt.Sprint(c.Body["count"]))
		}
	}
	if fmt.Sprint(counts) != "[1 10 10 3]" { // the first launch, then LaunchN
		t.Fatalf("RunTask counts %v, want [1 10 10 3]", counts)
	}
	seen := map[string]bool{}
	for _, tk := range f.Tasks() {
		if seen[tk.ARN] || tk.StartedBy != StartedBy(testToken) {
			t.Fatalf("task %+v repeated or not the token's", tk)
		}
		seen[tk.ARN] = true
	}
	if len(seen) != 24 {
		t.Fatalf("%d tasks in ECS, want 24", len(seen))
	}
	// Extra skips the reuse of a live task; without it the token's live
	// task is reused.
	if _, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue, Extra: true}); err != nil || len(f.Tasks()) != 25 {
		t.Fatalf("an extra launch: %v, %d tasks", err, len(f.Tasks()))
	}
	if _, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue}); err != nil || len(f.Tasks()) != 25 {
		t.Fatalf("a plain launch: %v, %d tasks (want the live one reused)", err, len(f.Tasks()))
	}
}
