package launcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
)

const testToken = "0f8fad5b-d9cb-469f-a165-70867728950e"
const testQueue = "report-a432dda8147b7660"

// ecsCall is one request the fake received.
type ecsCall struct {
	Op   string
	Body map[string]any
}

type fakeTask struct {
	arn, startedBy, desired string
}

// fakeECS speaks enough of ECS's JSON 1.1 protocol for the launcher and
// records every request.
type fakeECS struct {
	t  *testing.T
	mu sync.Mutex

	calls    []ecsCall
	tasks    []*fakeTask
	throttle map[string]int // op → how many calls to answer ThrottlingException
	failures int            // RunTask calls to answer with failures[]
	reason   string         // failure reason
	statuses []string       // DescribeTasks lastStatus sequence; last repeats
	stopped  string         // stoppedReason for STOPPED
}

func newFakeECS(t *testing.T) (*fakeECS, *ecs.Client) {
	f := &fakeECS{t: t, throttle: map[string]int{}, reason: "RESOURCE:CPU", statuses: []string{"RUNNING"}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	client := ecs.New(ecs.Options{
		Region:       "ap-northeast-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		// The launcher's own retries are under test, not the SDK's.
		Retryer: aws.NopRetryer{},
	})
	return f, client
}

func (f *fakeECS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "AmazonEC2ContainerServiceV20141113.")
	if !ok || r.Header.Get("Content-Type") != "application/x-amz-json-1.1" || r.Method != http.MethodPost {
		f.t.Errorf("unexpected request %s %s target=%q type=%q", r.Method, r.URL, target, r.Header.Get("Content-Type"))
		http.Error(w, "bad", 400)
		return
	}
	if !strings.Contains(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIDTEST/") ||
		!strings.Contains(r.Header.Get("Authorization"), "/ap-northeast-1/ecs/aws4_request") {
		f.t.Errorf("request not signed for ecs in ap-northeast-1: %q", r.Header.Get("Authorization"))
	}
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		f.t.Errorf("%s body %q: %v", op, raw, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, ecsCall{op, body})
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	if f.throttle[op] > 0 {
		f.throttle[op]--
		writeECSError(w, "ThrottlingException", "Rate exceeded")
		return
	}
	switch op {
	case "ListTasks":
		var arns []string
		for _, t := range f.tasks {
			if t.startedBy == body["startedBy"] && t.desired == body["desiredStatus"] {
				arns = append(arns, t.arn)
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"taskArns": arns})
	case "RunTask":
		if f.failures > 0 {
			f.failures--
			json.NewEncoder(w).Encode(map[string]any{"tasks": []any{}, "failures": []any{
				map[string]any{"arn": "arn:aws:ecs:ap-northeast-1:123456789012:container-instance/x", "reason": f.reason, "detail": "no capacity"},
			}})
			return
		}
		arn := fmt.Sprintf("arn:aws:ecs:ap-northeast-1:123456789012:task/%s/task%d", body["cluster"], len(f.tasks)+1)
		f.tasks = append(f.tasks, &fakeTask{arn: arn, startedBy: body["startedBy"].(string), desired: "RUNNING"})
		json.NewEncoder(w).Encode(map[string]any{"tasks": []any{map[string]any{"taskArn": arn, "lastStatus": "PROVISIONING"}}, "failures": []any{}})
	case "DescribeTasks":
		status := f.statuses[0]
		if len(f.statuses) > 1 {
			f.statuses = f.statuses[1:]
		}
		arn := body["tasks"].([]any)[0].(string)
		task := map[string]any{"taskArn": arn, "lastStatus": status, "desiredStatus": "RUNNING"}
		if status == "STOPPED" {
			task["desiredStatus"] = "STOPPED"
			task["stoppedReason"] = f.stopped
		}
		json.NewEncoder(w).Encode(map[string]any{"tasks": []any{task}, "failures": []any{}})
	case "StopTask":
		for _, t := range f.tasks {
			if t.arn == body["task"] {
				t.desired = "STOPPED"
				json.NewEncoder(w).Encode(map[string]any{"task": map[string]any{"taskArn": t.arn, "desiredStatus": "STOPPED", "stoppedReason": body["reason"]}})
				return
			}
		}
		writeECSError(w, "InvalidParameterException", "The referenced task was not found.")
	default:
		writeECSError(w, "UnknownOperationException", op)
	}
}

func writeECSError(w http.ResponseWriter, code, msg string) {
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]any{"__type": code, "message": msg})
}

func (f *fakeECS) ops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		out = append(out, c.Op)
	}
	return out
}

func (f *fakeECS) lastCall(op string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.calls) - 1; i >= 0; i-- {
		if f.calls[i].Op == op {
			return f.calls[i].Body
		}
	}
	f.t.Fatalf("no %s call", op)
	return nil
}

// fakeClock advances only when the launcher sleeps.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return ctx.Err()
}

func baseConfig() ECSConfig {
	return ECSConfig{
		Cluster:        "report-cluster",
		TaskDefinition: "sidekiq-worker:7",
		Subnets:        []string{"subnet-a", "subnet-b"},
		SecurityGroups: []string{"sg-1"},
		Env:            "production",
	}
}

func newTestECS(t *testing.T, cfg ECSConfig) (*ECS, *fakeECS, *fakeClock) {
	t.Helper()
	f, client := newFakeECS(t)
	clk := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	e, err := NewECS(cfg, client, WithClock(clk.Now), WithSleep(clk.Sleep),
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
	json.Unmarshal(b, &out)
	return out
}

func TestECSLaunchRunTaskFields(t *testing.T) {
	t.Parallel()
	e, f, clk := newTestECS(t, baseConfig())
	task, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err != nil {
		t.Fatal(err)
	}
	if task.ID != "arn:aws:ecs:ap-northeast-1:123456789012:task/report-cluster/task1" || !task.StartedAt.Equal(clk.Now()) {
		t.Fatalf("task = %+v", task)
	}
	if got := fmt.Sprint(f.ops()); got != "[ListTasks ListTasks RunTask]" {
		t.Fatalf("ops = %s (WaitRunning 0 must not describe)", got)
	}
	f.mu.Lock()
	list1, list2 := f.calls[0].Body, f.calls[1].Body
	f.mu.Unlock()
	wantList := func(status string) any {
		return jsonOf(t, map[string]any{"cluster": "report-cluster", "startedBy": testToken, "desiredStatus": status})
	}
	if !reflect.DeepEqual(any(list1), wantList("RUNNING")) || !reflect.DeepEqual(any(list2), wantList("PENDING")) {
		t.Fatalf("ListTasks bodies = %v, %v", list1, list2)
	}
	want := jsonOf(t, map[string]any{
		"cluster":              "report-cluster",
		"taskDefinition":       "sidekiq-worker:7",
		"launchType":           "FARGATE",
		"count":                1,
		"enableECSManagedTags": true,
		"startedBy":            testToken,
		"clientToken":          ClientToken(testToken),
		"networkConfiguration": map[string]any{"awsvpcConfiguration": map[string]any{
			"subnets":        []string{"subnet-a", "subnet-b"},
			"securityGroups": []string{"sg-1"},
			"assignPublicIp": "DISABLED",
		}},
		"overrides": map[string]any{"containerOverrides": []any{map[string]any{
			"name":    "sidekiqContainer",
			"command": []string{"/app/worker", "-q", testQueue, "-c", "10"},
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
	got := any(f.lastCall("RunTask"))
	if !reflect.DeepEqual(got, want) {
		gb, _ := json.MarshalIndent(got, "", " ")
		wb, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("RunTask body\n got %s\nwant %s", gb, wb)
	}
	if len(ClientToken(testToken)) > 64 || len(StartedBy(testToken)) > 36 {
		t.Fatal("token limits")
	}

	// A second Launch for the same token finds the running task.
	again, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err != nil || again.ID != task.ID {
		t.Fatalf("second launch = %+v, %v", again, err)
	}
	if got := fmt.Sprint(f.ops()); got != "[ListTasks ListTasks RunTask ListTasks]" {
		t.Fatalf("ops = %s", got)
	}
}

func TestECSCustomConfig(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.ContainerName = "worker"
	cfg.AssignPublicIP = true
	cfg.Command = []string{"/bin/w", "--queue={queue}", "--token", "{token}", "-c", "{concurrency}"}
	cfg.Concurrency = 3
	e, f, _ := newTestECS(t, cfg)
	if _, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue}); err != nil {
		t.Fatal(err)
	}
	body := f.lastCall("RunTask")
	co := body["overrides"].(map[string]any)["containerOverrides"].([]any)[0].(map[string]any)
	if co["name"] != "worker" || fmt.Sprint(co["command"]) != fmt.Sprint([]any{"/bin/w", "--queue=" + testQueue, "--token", testToken, "-c", "3"}) {
		t.Fatalf("override = %v", co)
	}
	if ip := body["networkConfiguration"].(map[string]any)["awsvpcConfiguration"].(map[string]any)["assignPublicIp"]; ip != "ENABLED" {
		t.Fatalf("assignPublicIp = %v", ip)
	}
}

func TestECSReusesPendingTask(t *testing.T) {
	t.Parallel()
	e, f, _ := newTestECS(t, baseConfig())
	f.tasks = append(f.tasks, &fakeTask{arn: "arn:existing", startedBy: testToken, desired: "PENDING"},
		&fakeTask{arn: "arn:other", startedBy: "someone-else", desired: "RUNNING"})
	task, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err != nil || task.ID != "arn:existing" {
		t.Fatalf("launch = %+v, %v", task, err)
	}
	if got := fmt.Sprint(f.ops()); got != "[ListTasks ListTasks]" {
		t.Fatalf("ops = %s, want no RunTask", got)
	}
}

func TestECSRetriesThrottling(t *testing.T) {
	t.Parallel()
	e, f, clk := newTestECS(t, baseConfig())
	f.throttle["ListTasks"] = 1
	f.throttle["RunTask"] = 3
	task, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err != nil || task.ID == "" {
		t.Fatalf("launch = %+v, %v", task, err)
	}
	if got := fmt.Sprint(f.ops()); got != "[ListTasks ListTasks ListTasks RunTask RunTask RunTask RunTask]" {
		t.Fatalf("ops = %s", got)
	}
	// Exponential backoff: 1s after the ListTasks throttle, then 1s, 2s, 4s.
	if got := fmt.Sprint(clk.sleeps); got != "[1s 1s 2s 4s]" {
		t.Fatalf("sleeps = %s", got)
	}
	// Every RunTask attempt carries the same idempotency token.
	f.mu.Lock()
	for _, c := range f.calls {
		if c.Op == "RunTask" && c.Body["clientToken"] != ClientToken(testToken) {
			t.Errorf("clientToken = %v", c.Body["clientToken"])
		}
	}
	f.mu.Unlock()
}

func TestECSRetriesCapacityFailures(t *testing.T) {
	t.Parallel()
	e, f, clk := newTestECS(t, baseConfig())
	f.failures = 2
	if _, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(clk.sleeps); got != "[1s 2s]" {
		t.Fatalf("sleeps = %s", got)
	}
}

func TestECSGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.MaxAttempts = 3
	cfg.MaxBackoff = 1500 * time.Millisecond
	e, f, clk := newTestECS(t, cfg)
	f.failures = 100
	_, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	var fe *FailuresError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "RESOURCE:CPU") || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("err = %v", err)
	}
	if n := strings.Count(fmt.Sprint(f.ops()), "RunTask"); n != 3 {
		t.Fatalf("%d RunTask calls, want 3", n)
	}
	if got := fmt.Sprint(clk.sleeps); got != "[1s 1.5s]" { // capped by MaxBackoff
		t.Fatalf("sleeps = %s", got)
	}

	// Throttling that never ends also gives up, naming the error.
	e2, f2, _ := newTestECS(t, cfg)
	f2.throttle["RunTask"] = 100
	_, err = e2.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err == nil || !strings.Contains(err.Error(), "ThrottlingException") {
		t.Fatalf("err = %v", err)
	}
}

func TestECSMissingTaskDefinitionNotRetried(t *testing.T) {
	t.Parallel()
	e, f, clk := newTestECS(t, baseConfig())
	f.failures = 100
	f.reason = "MISSING"
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

	e, f, clk := newTestECS(t, cfg)
	f.statuses = []string{"PROVISIONING", "PENDING", "RUNNING"}
	if _, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(fmt.Sprint(f.ops()), "DescribeTasks"); n != 3 {
		t.Fatalf("%d DescribeTasks, want 3", n)
	}
	if got := fmt.Sprint(clk.sleeps); got != "[10s 10s]" {
		t.Fatalf("sleeps = %s", got)
	}
	d := f.lastCall("DescribeTasks")
	if d["cluster"] != "report-cluster" || fmt.Sprint(d["tasks"]) != "[arn:aws:ecs:ap-northeast-1:123456789012:task/report-cluster/task1]" {
		t.Fatalf("describe body = %v", d)
	}

	// STOPPED before RUNNING names the reason.
	e, f, _ = newTestECS(t, cfg)
	f.statuses = []string{"PENDING", "STOPPED"}
	f.stopped = "CannotPullContainerError: image not found"
	_, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	var se *StoppedError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "CannotPullContainerError") {
		t.Fatalf("err = %v", err)
	}

	// Never RUNNING: times out after WaitRunning.
	e, f, clk = newTestECS(t, cfg)
	f.statuses = []string{"PENDING"}
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
	e, f, clk := newTestECS(t, baseConfig())
	task, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue})
	if err != nil {
		t.Fatal(err)
	}
	f.throttle["StopTask"] = 1
	if err := e.Stop(context.Background(), task, "report finalized"); err != nil {
		t.Fatal(err)
	}
	body := f.lastCall("StopTask")
	want := jsonOf(t, map[string]any{"cluster": "report-cluster", "task": task.ID, "reason": "report finalized"})
	if !reflect.DeepEqual(any(body), want) {
		t.Fatalf("StopTask body = %v", body)
	}
	if len(clk.sleeps) != 1 {
		t.Fatalf("sleeps = %v, want one retry", clk.sleeps)
	}
	// Stopped now: Launch would start a new one, and ListTasks RUNNING is empty.
	f.mu.Lock()
	desired := f.tasks[0].desired
	f.mu.Unlock()
	if desired != "STOPPED" {
		t.Fatalf("task desired = %s", desired)
	}
	// Unknown task is not an error; an empty task is a no-op.
	if err := e.Stop(context.Background(), Task{ID: "arn:gone"}, "x"); err != nil {
		t.Fatalf("stop unknown = %v", err)
	}
	n := len(f.ops())
	if err := e.Stop(context.Background(), Task{}, "x"); err != nil || len(f.ops()) != n {
		t.Fatalf("stop empty = %v, calls %d→%d", err, n, len(f.ops()))
	}
	// Long reasons are cut to ECS's 255 characters.
	if err := e.Stop(context.Background(), task, strings.Repeat("r", 300)); err != nil {
		t.Fatal(err)
	}
	if r := f.lastCall("StopTask")["reason"].(string); len(r) != 255 {
		t.Fatalf("reason len %d", len(r))
	}
}

func TestECSCancelledWhileBackingOff(t *testing.T) {
	t.Parallel()
	e, f, _ := newTestECS(t, baseConfig())
	f.throttle["ListTasks"] = 100
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.Launch(ctx, Request{Token: testToken, Queue: testQueue})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestECSConfigValidation(t *testing.T) {
	t.Parallel()
	_, client := newFakeECS(t)
	_, err := NewECS(ECSConfig{}, client)
	for _, want := range []string{"cluster", "task definition", "subnet"} {
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
		fmt.Sprint(d.Command) != "[/app/worker -q {queue} -c {concurrency}]" {
		t.Errorf("defaults = %+v", d)
	}
}

func TestStartedByAndClientToken(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 100)
	for _, tok := range []string{testToken, "short", long, "has space/and:colon", strings.ToUpper(testToken)} {
		sb, ct := StartedBy(tok), ClientToken(tok)
		if len(sb) > 36 || startedByInvalid.MatchString(sb) {
			t.Errorf("StartedBy(%q) = %q", tok, sb)
		}
		if len(ct) > 64 {
			t.Errorf("ClientToken(%q) = %q", tok, ct)
		}
		if StartedBy(tok) != sb || ClientToken(tok) != ct {
			t.Errorf("not deterministic for %q", tok)
		}
	}
	if StartedBy(testToken) != testToken {
		t.Errorf("UUID startedBy = %q, want the token", StartedBy(testToken))
	}
	if StartedBy(long) == StartedBy(long+"y") || ClientToken("a") == ClientToken("b") {
		t.Error("collision")
	}
}

// TestNewECSClient uses the default chain with credentials from the
// environment and an explicit endpoint.
func TestNewECSClient(t *testing.T) {
	f, _ := newFakeECS(t)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_ENDPOINT_URL_ECS", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	client, err := NewECSClient(context.Background(), "", srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if client.Options().Region != "ap-northeast-1" {
		t.Fatalf("region = %q", client.Options().Region)
	}
	e, err := NewECS(baseConfig(), client)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Launch(context.Background(), Request{Token: testToken, Queue: testQueue}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fmt.Sprint(f.ops()), "RunTask") {
		t.Fatalf("ops = %v", f.ops())
	}
	client, err = NewECSClient(context.Background(), "us-east-1", "")
	if err != nil || client.Options().Region != "us-east-1" || client.Options().BaseEndpoint != nil {
		t.Fatalf("client = %v, %v", client.Options().Region, err)
	}
}
