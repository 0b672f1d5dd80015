package launcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pallarel/pallarel/launcher/ecstest"
)

const testToken = "0f8fad5b-d9cb-469f-a165-70867728950e"
const testQueue = "report-a432dda8147b7660"

// fakeClock advances only when the launcher sleeps.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	sleeps  []time.Duration
	onSleep func(n int) // called after the n-th sleep (1-based)
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	n, hook := len(c.sleeps), c.onSleep
	c.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	return ctx.Err()
}

func baseConfig() ECSConfig {
	return ECSConfig{
		Cluster:        "report-cluster",
		TaskDefinition: "pallarel-token-worker:7",
		Subnets:        []string{"subnet-a", "subnet-b"},
		SecurityGroups: []string{"sg-1"},
		Env:            "production",
	}
}

func newTestECS(t *testing.T, cfg ECSConfig) (*ECS, *ecstest.Server, *fakeClock) {
	t.Helper()
	f := ecstest.New(t)
	clk := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	e, err := NewECS(cfg, f.Client(cfg.WithDefaults().MaxAttempts), WithClock(clk.Now), WithSleep(clk.Sleep),
		WithJitter(func(d time.Duration) time.Duration { return d }),
		WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	return e, f, clk
}

// jsonOf round-trips v so expectations compare with decoded request bodies.
func jsonOf(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	d.Decode(&out)
	return out
}

var clientTokenRule = regexp.MustCompile(`^p-[0-9a-f]{8}-[0-9a-f]{32}$`)

func TestECSLaunchRunTaskFields(t *testing.T) {
	t.Parallel()
	e, f, clk := newTestECS(t, baseConfig())
	task, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err != nil {
		t.Fatal(err)
	}
	if task.ID != f.Tasks()[0].ARN || !task.StartedAt.Equal(clk.Now()) {
		t.Fatalf("task = %+v", task)
	}
	if got := fmt.Sprint(f.Ops()); got != "[ListTasks RunTask]" {
		t.Fatalf("ops = %s (nothing listed: no DescribeTasks; WaitRunning 0: no wait)", got)
	}
	// startedBy is ListTasks' only filter: ECS refuses it with desiredStatus.
	if got, want := any(f.Last("ListTasks")), jsonOf(t, map[string]any{"cluster": "report-cluster", "startedBy": testToken}); !reflect.DeepEqual(got, want) {
		t.Fatalf("ListTasks body = %v", got)
	}
	got := f.Last("RunTask")
	token, _ := got["clientToken"].(string)
	if !clientTokenRule.MatchString(token) {
		t.Fatalf("clientToken = %q", token)
	}
	want := jsonOf(t, map[string]any{
		"cluster":              "report-cluster",
		"taskDefinition":       "pallarel-token-worker:7",
		"launchType":           "FARGATE",
		"count":                1,
		"enableECSManagedTags": true,
		"startedBy":            testToken,
		"clientToken":          token,
		"networkConfiguration": map[string]any{"awsvpcConfiguration": map[string]any{
			"subnets":        []string{"subnet-a", "subnet-b"},
			"securityGroups": []string{"sg-1"},
			"assignPublicIp": "DISABLED",
		}},
		"overrides": map[string]any{"containerOverrides": []any{map[string]any{
			"name":    "sidekiqContainer",
			"command": []string{"-q", testQueue, "-c", "10"},
			"environment": []any{
				map[string]any{"name": "TOKEN", "value": testToken},
				map[string]any{"name": "QUEUE", "value": testQueue},
			},
		}}},
		"tags": []any{
			map[string]any{"key": "App", "value": "report"},
			map[string]any{"key": "Token", "value": testToken},
			map[string]any{"key": "Env", "value": "production"},
		},
	})
	if !reflect.DeepEqual(any(got), want) {
		gb, _ := json.MarshalIndent(got, "", " ")
		wb, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("RunTask body\n got %s\nwant %s", gb, wb)
	}

	// A second Launch finds the task. DescribeTasks does not know it yet
	// (eventual consistency): a listed task it calls MISSING is reused.
	again, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err != nil || again.ID != task.ID {
		t.Fatalf("second launch = %+v, %v", again, err)
	}
	if got := fmt.Sprint(f.Ops()); got != "[ListTasks RunTask ListTasks DescribeTasks]" {
		t.Fatalf("ops = %s", got)
	}
	if n := len(f.Tasks()); n != 1 {
		t.Fatalf("%d tasks, want 1", n)
	}
}

func TestECSCustomConfig(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.ContainerName = "worker"
	cfg.AssignPublicIP = true
	cfg.PlatformVersion = "1.4.0"
	cfg.PropagateTags = true
	cfg.CapacityProviders = []CapacityProvider{{Name: "FARGATE_SPOT", Weight: 3}, {Name: "FARGATE", Weight: 1, Base: 1}}
	cfg.Command = []string{"--queue={queue}", "--token", "{token}", "-c", "{concurrency}"}
	cfg.Concurrency = 3
	e, f, _ := newTestECS(t, cfg)
	f.Register("pallarel-token-worker", "worker")
	if _, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue}); err != nil {
		t.Fatal(err)
	}
	body := f.Last("RunTask")
	co := body["overrides"].(map[string]any)["containerOverrides"].([]any)[0].(map[string]any)
	if co["name"] != "worker" || fmt.Sprint(co["command"]) != fmt.Sprint([]any{"--queue=" + testQueue, "--token", testToken, "-c", "3"}) {
		t.Fatalf("override = %v", co)
	}
	if ip := body["networkConfiguration"].(map[string]any)["awsvpcConfiguration"].(map[string]any)["assignPublicIp"]; ip != "ENABLED" {
		t.Fatalf("assignPublicIp = %v", ip)
	}
	if _, set := body["launchType"]; set {
		t.Fatal("launchType sent with a capacity provider strategy")
	}
	wantCPS := jsonOf(t, []any{
		map[string]any{"capacityProvider": "FARGATE_SPOT", "weight": 3},
		map[string]any{"capacityProvider": "FARGATE", "weight": 1, "base": 1},
	})
	if !reflect.DeepEqual(any(body["capacityProviderStrategy"]), wantCPS) || body["platformVersion"] != "1.4.0" || body["propagateTags"] != "TASK_DEFINITION" {
		t.Fatalf("body = %v", body)
	}
	// The task definition's App is propagated: the request does not
	// repeat the key (ecstest refuses a repeated key, as ECS does).
	wantTags := jsonOf(t, []any{
		map[string]any{"key": "Token", "value": testToken},
		map[string]any{"key": "Env", "value": "production"},
	})
	if !reflect.DeepEqual(any(body["tags"]), wantTags) {
		t.Fatalf("tags = %v, want %v", body["tags"], wantTags)
	}
}

// The fake refuses what ECS refuses; the launcher must not send it.
func TestECSFakeRefusesWhatECSRefuses(t *testing.T) {
	t.Parallel()
	e, f, _ := newTestECS(t, baseConfig())
	f.Register("pallarel-token-worker", "otherContainer") // override names a container the TD lacks
	_, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err == nil || !strings.Contains(err.Error(), "not a container in the TaskDefinition") {
		t.Fatalf("err = %v", err)
	}
	cfg := baseConfig()
	cfg.TaskDefinition = "unknown-family"
	e, _, _ = newTestECS(t, cfg)
	if _, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue}); err == nil || !strings.Contains(err.Error(), "ClientException") {
		t.Fatalf("err = %v", err)
	}
}

func TestECSReusesOnlyLiveTasks(t *testing.T) {
	t.Parallel()
	e, f, _ := newTestECS(t, baseConfig())
	f.PageSize = 1
	f.Add(ecstest.Task{ARN: "arn:stopping", Cluster: "report-cluster", StartedBy: testToken, DesiredStatus: "RUNNING", LastStatus: "DEPROVISIONING"})
	f.Add(ecstest.Task{ARN: "arn:other-token", Cluster: "report-cluster", StartedBy: "someone-else", DesiredStatus: "RUNNING", LastStatus: "RUNNING"})
	f.Add(ecstest.Task{ARN: "arn:live", Cluster: "report-cluster", StartedBy: testToken, DesiredStatus: "RUNNING", LastStatus: "PENDING"})
	task, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err != nil || task.ID != "arn:live" {
		t.Fatalf("launch = %+v, %v", task, err)
	}
	if got := fmt.Sprint(f.Ops()); got != "[ListTasks ListTasks DescribeTasks]" {
		t.Fatalf("ops = %s, want two ListTasks pages and no RunTask", got)
	}
}

// A task that died is reported with ECS's reason, and the next Launch
// starts a new task with a new clientToken: ECS would answer the old token
// with the dead task.
func TestECSTaskDeathAndRelaunch(t *testing.T) {
	t.Parallel()
	e, f, clk := newTestECS(t, baseConfig())
	ctx := context.Background()
	first, err := e.Launch(ctx, Request{Token: testToken, Queue: testQueue})
	if err != nil {
		t.Fatal(err)
	}
	// Just launched, DescribeTasks does not know it yet: still starting.
	if st, err := e.TaskState(ctx, first); err != nil || !st.Running {
		t.Fatalf("state right after launch = %+v, %v", st, err)
	}
	f.SetLastStatus(first.ID, "RUNNING")
	if st, err := e.TaskState(ctx, first); err != nil || st != (TaskState{Running: true}) {
		t.Fatalf("running state = %+v, %v", st, err)
	}
	f.Kill(first.ID, "EssentialContainerExited", "Essential container in task exited", 2, "")
	st, err := e.TaskState(ctx, first)
	if err != nil || st.Running || st.Reason != "EssentialContainerExited: Essential container in task exited; container sidekiqContainer exit 2" {
		t.Fatalf("stopped state = %+v, %v", st, err)
	}

	clk.Advance(time.Minute)
	second, err := e.Launch(ctx, Request{Token: testToken, Queue: testQueue})
	if err != nil || second.ID == first.ID || second.ID == "" {
		t.Fatalf("relaunch = %+v, %v (first %s)", second, err, first.ID)
	}
	tasks := f.Tasks()
	if len(tasks) != 2 || tasks[0].ClientToken == tasks[1].ClientToken {
		t.Fatalf("tasks = %+v", tasks)
	}

	// A task that never ran: no exit code, the container's reason.
	if st, _ := e.TaskState(ctx, second); !st.Running { // MISSING: not yet consistent
		t.Fatalf("new task state = %+v", st)
	}
	f.Kill(second.ID, "TaskFailedToStart", "ResourceInitializationError: unable to pull secrets", -1, "CannotPullContainerError: pull access denied")
	f.SetLastStatus(second.ID, "STOPPED")
	st, _ = e.TaskState(ctx, second)
	if st.Running || !strings.Contains(st.Reason, "TaskFailedToStart: ResourceInitializationError") ||
		!strings.Contains(st.Reason, "container sidekiqContainer: CannotPullContainerError") {
		t.Fatalf("state = %+v", st)
	}
}

// MISSING counts as starting only within DescribeGrace of the launch.
func TestECSTaskStateMissing(t *testing.T) {
	t.Parallel()
	e, f, clk := newTestECS(t, baseConfig())
	f.DescribeLag = 1000
	ctx := context.Background()
	task, err := e.Launch(ctx, Request{Token: testToken, Queue: testQueue})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := e.TaskState(ctx, task); !st.Running {
		t.Fatalf("state within grace = %+v", st)
	}
	clk.Advance(DefaultDescribeGrace)
	st, err := e.TaskState(ctx, task)
	if err != nil || st.Running || !strings.Contains(st.Reason, "no longer knows") || !strings.Contains(st.Reason, "MISSING") {
		t.Fatalf("state after grace = %+v, %v", st, err)
	}
	// A task this launcher never started and the caller gives no start
	// time for: MISSING means gone.
	st, _ = e.TaskState(ctx, Task{ID: "arn:aws:ecs:ap-northeast-1:123456789012:task/report-cluster/gone"})
	if st.Running {
		t.Fatalf("unknown task = %+v", st)
	}
}

// A lost RunTask response is retried by the SDK with the same clientToken,
// and ECS answers it with the task it already started: one task.
func TestECSTransportRetryKeepsClientToken(t *testing.T) {
	t.Parallel()
	e, f, clk := newTestECS(t, baseConfig())
	f.LoseResponse["RunTask"] = 1
	task, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err != nil {
		t.Fatal(err)
	}
	tasks := f.Tasks()
	if len(tasks) != 1 || tasks[0].ARN != task.ID {
		t.Fatalf("tasks = %+v, launched %s", tasks, task.ID)
	}
	var tokens []any
	for _, c := range f.Calls() {
		if c.Op == "RunTask" {
			tokens = append(tokens, c.Body["clientToken"])
		}
	}
	if len(tokens) != 2 || tokens[0] != tokens[1] {
		t.Fatalf("RunTask tokens = %v, want the same token twice", tokens)
	}
	if len(clk.sleeps) != 0 {
		t.Fatalf("launcher slept %v: the SDK retries API errors, not the launcher", clk.sleeps)
	}
}

// Throttling is retried by the SDK alone: MaxAttempts requests, not
// MaxAttempts × the SDK's attempts.
func TestECSRetriesAreNotStacked(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.MaxAttempts = 3
	e, f, clk := newTestECS(t, cfg)
	f.Throttle["RunTask"] = 100
	_, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	// Past the SDK's retries the run waits its turn: the supervisor tries
	// again on a later pass, without counting a failed launch.
	var we *WaitError
	if !errors.As(err, &we) || !strings.Contains(err.Error(), "ThrottlingException") || !strings.HasPrefix(err.Error(), WaitingPrefix) {
		t.Fatalf("err = %v, want a WaitError of the throttling", err)
	}
	if n := strings.Count(fmt.Sprint(f.Ops()), "RunTask"); n != 3 {
		t.Fatalf("%d RunTask requests, want 3", n)
	}
	if len(clk.sleeps) != 0 {
		t.Fatalf("launcher slept %v on throttling", clk.sleeps)
	}

	// A throttle that clears within the SDK's attempts is invisible.
	e, f, _ = newTestECS(t, cfg)
	f.Throttle["ListTasks"] = 2
	if _, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue}); err != nil {
		t.Fatal(err)
	}
}

func TestECSRetriesCapacityFailures(t *testing.T) {
	t.Parallel()
	e, f, clk := newTestECS(t, baseConfig())
	f.Failures = 2
	if _, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(clk.sleeps); got != "[1s 2s]" {
		t.Fatalf("sleeps = %s", got)
	}
	seen := map[any]bool{}
	for _, c := range f.Calls() {
		if c.Op == "RunTask" {
			seen[c.Body["clientToken"]] = true
		}
	}
	if len(seen) != 3 {
		t.Fatalf("%d distinct clientTokens over 3 RunTask attempts, want 3", len(seen))
	}
}

func TestECSGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.MaxAttempts = 3
	cfg.MaxBackoff = 1500 * time.Millisecond
	e, f, clk := newTestECS(t, cfg)
	f.Failures = 100
	_, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	var fe *FailuresError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "RESOURCE:CPU") || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("err = %v", err)
	}
	if n := strings.Count(fmt.Sprint(f.Ops()), "RunTask"); n != 3 {
		t.Fatalf("%d RunTask calls, want 3", n)
	}
	if got := fmt.Sprint(clk.sleeps); got != "[1s 1.5s]" { // capped by MaxBackoff
		t.Fatalf("sleeps = %s", got)
	}
}

func TestECSMissingTaskDefinitionNotRetried(t *testing.T) {
	t.Parallel()
	e, f, clk := newTestECS(t, baseConfig())
	f.Failures = 100
	f.FailureReason = "MISSING"
	_, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err == nil || !strings.Contains(err.Error(), "MISSING") {
		t.Fatalf("err = %v", err)
	}
	if len(clk.sleeps) != 0 {
		t.Fatalf("slept %v for a permanent failure", clk.sleeps)
	}
}

func TestECSWaitRunning(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.WaitRunning = time.Minute
	cfg.PollInterval = 10 * time.Second

	// MISSING (not yet consistent), PENDING, RUNNING.
	e, f, clk := newTestECS(t, cfg)
	clk.onSleep = func(n int) {
		arn := f.Tasks()[0].ARN
		f.SetLastStatus(arn, map[int]string{1: "PENDING", 2: "RUNNING"}[n])
	}
	if _, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(fmt.Sprint(f.Ops()), "DescribeTasks"); n != 3 {
		t.Fatalf("%d DescribeTasks, want 3", n)
	}
	if got := fmt.Sprint(clk.sleeps); got != "[10s 10s]" {
		t.Fatalf("sleeps = %s", got)
	}
	if d := f.Last("DescribeTasks"); d["cluster"] != "report-cluster" || fmt.Sprint(d["tasks"]) != "["+f.Tasks()[0].ARN+"]" {
		t.Fatalf("describe body = %v", d)
	}

	// STOPPED before RUNNING names the reason.
	e, f, clk = newTestECS(t, cfg)
	clk.onSleep = func(int) {
		f.Kill(f.Tasks()[0].ARN, "TaskFailedToStart", "CannotPullContainerError: image not found", -1, "")
	}
	_, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	var se *StoppedError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "TaskFailedToStart: CannotPullContainerError") {
		t.Fatalf("err = %v", err)
	}

	// Never RUNNING: times out after WaitRunning.
	e, f, clk = newTestECS(t, cfg)
	clk.onSleep = func(int) { f.SetLastStatus(f.Tasks()[0].ARN, "PENDING") }
	start := clk.Now()
	_, err = e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err == nil || !strings.Contains(err.Error(), "not running after 1m0s") || !strings.Contains(err.Error(), "PENDING") {
		t.Fatalf("err = %v", err)
	}
	if waited := clk.Now().Sub(start); waited != time.Minute {
		t.Fatalf("waited %s, want 1m", waited)
	}
}

func TestECSStop(t *testing.T) {
	t.Parallel()
	e, f, _ := newTestECS(t, baseConfig())
	ctx := context.Background()
	task, err := e.Launch(ctx, Request{Token: testToken, Queue: testQueue})
	if err != nil {
		t.Fatal(err)
	}
	f.Throttle["StopTask"] = 1 // the SDK retries it
	if err := e.Stop(ctx, task, "report finalized"); err != nil {
		t.Fatal(err)
	}
	want := jsonOf(t, map[string]any{"cluster": "report-cluster", "task": task.ID, "reason": "report finalized"})
	if body := f.Last("StopTask"); !reflect.DeepEqual(any(body), want) {
		t.Fatalf("StopTask body = %v", body)
	}
	if st := f.Tasks()[0]; st.DesiredStatus != "STOPPED" || st.StoppedReason != "report finalized" {
		t.Fatalf("task = %+v", st)
	}
	// Unknown task is not an error; an empty task is a no-op.
	if err := e.Stop(ctx, Task{ID: "arn:gone"}, "x"); err != nil {
		t.Fatalf("stop unknown = %v", err)
	}
	n := len(f.Ops())
	if err := e.Stop(ctx, Task{}, "x"); err != nil || len(f.Ops()) != n {
		t.Fatalf("stop empty = %v, calls %d→%d", err, n, len(f.Ops()))
	}
	// Long reasons are cut to ECS's 255 characters (the fake refuses more).
	if err := e.Stop(ctx, task, strings.Repeat("r", 300)); err != nil {
		t.Fatal(err)
	}
	// After a stop, Launch starts a new task.
	next, err := e.Launch(ctx, Request{Token: testToken, Queue: testQueue})
	if err != nil || next.ID == task.ID {
		t.Fatalf("launch after stop = %+v, %v", next, err)
	}
}

func TestECSCancelledWhileBackingOff(t *testing.T) {
	t.Parallel()
	e, f, _ := newTestECS(t, baseConfig())
	f.Failures = 100
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.Launch(ctx, Request{Token: testToken, Queue: testQueue})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestECSConfigValidation(t *testing.T) {
	t.Parallel()
	client := ecstest.New(t).Client(1)
	_, err := NewECS(ECSConfig{Command: []string{"/app/worker", "-q", "{queue}"}, CapacityProviders: []CapacityProvider{{Name: "A", Base: 1}, {Name: "B", Base: 1}}}, client)
	for _, want := range []string{"cluster", "task definition", "subnet", "starts with a path", "only one capacity provider may have a base"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err %v does not name %s", err, want)
		}
	}
	if _, err := NewECS(baseConfig(), nil); err == nil {
		t.Error("nil client accepted")
	}
	e, _ := NewECS(baseConfig(), client)
	if _, err := e.Launch(context.Background(), Request{Token: testToken}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("launch without queue = %v", err)
	}
	d := ECSConfig{}.WithDefaults()
	if d.ContainerName != "sidekiqContainer" || d.Concurrency != 10 || d.MaxAttempts != 5 || d.WaitRunning != 0 ||
		d.DescribeGrace != 2*time.Minute || fmt.Sprint(d.Command) != "[-q {queue} -c {concurrency}]" {
		t.Errorf("defaults = %+v", d)
	}
	cps, err := ParseCapacityProviders(" FARGATE_SPOT:3, FARGATE:1:1 ,")
	if err != nil || fmt.Sprint(cps) != "[{FARGATE_SPOT 3 0} {FARGATE 1 1}]" {
		t.Errorf("parse = %v, %v", cps, err)
	}
	if cps, err := ParseCapacityProviders("FARGATE_SPOT"); err != nil || fmt.Sprint(cps) != "[{FARGATE_SPOT 1 0}]" {
		t.Errorf("parse default weight = %v, %v", cps, err)
	}
	for _, bad := range []string{"A:x", ":1", "A:1:2:3", "A:-1", "A:1:1,B:1:1", "A:1001"} {
		if _, err := ParseCapacityProviders(bad); err == nil {
			t.Errorf("ParseCapacityProviders(%q) accepted", bad)
		}
	}
}

func TestStartedByAndClientToken(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 100)
	for _, tok := range []string{testToken, "short", long, "has space/and:colon", strings.ToUpper(testToken)} {
		sb, ct := StartedBy(tok), NewClientToken(tok)
		if len(sb) > 36 || startedByInvalid.MatchString(sb) || StartedBy(tok) != sb {
			t.Errorf("StartedBy(%q) = %q", tok, sb)
		}
		if !clientTokenRule.MatchString(ct) || len(ct) > 64 {
			t.Errorf("NewClientToken(%q) = %q", tok, ct)
		}
		if NewClientToken(tok) == ct {
			t.Errorf("NewClientToken(%q) repeated a token", tok)
		}
	}
	if StartedBy(testToken) != testToken {
		t.Errorf("UUID startedBy = %q, want the token", StartedBy(testToken))
	}
	if StartedBy(long) == StartedBy(long+"y") {
		t.Error("collision")
	}
}

// TestNewECSClient uses the default chain with credentials from the
// environment and an explicit endpoint; the SDK's retryer takes the
// attempts cap.
func TestNewECSClient(t *testing.T) {
	f := ecstest.New(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_ENDPOINT_URL_ECS", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_MAX_ATTEMPTS", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	client, err := NewECSClient(context.Background(), "", f.URL, 2)
	if err != nil {
		t.Fatal(err)
	}
	if o := client.Options(); o.Region != "ap-northeast-1" || o.Retryer.MaxAttempts() != 2 {
		t.Fatalf("region = %q, attempts %d", o.Region, o.Retryer.MaxAttempts())
	}
	e, err := NewECS(baseConfig(), client)
	if err != nil {
		t.Fatal(err)
	}
	f.Throttle["ListTasks"] = 1 // one SDK retry
	if _, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(f.Ops()); got != "[ListTasks ListTasks RunTask]" {
		t.Fatalf("ops = %v", got)
	}
	client, err = NewECSClient(context.Background(), "us-east-1", "", 0)
	if err != nil || client.Options().Region != "us-east-1" || client.Options().BaseEndpoint != nil || client.Options().Retryer.MaxAttempts() != 5 {
		t.Fatalf("client = %v, %v", client.Options().Region, err)
	}
}
