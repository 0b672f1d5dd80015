package launcher

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestSelfIDFromECSMetadata(t *testing.T) {
	t.Parallel()
	const arn = "arn:aws:ecs:ap-northeast-1:123456789012:task/report-cluster/0123456789abcdef"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v4/abc/task" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `{"Cluster":"arn:aws:ecs:ap-northeast-1:123456789012:cluster/report-cluster","TaskARN":%q,"Family":"pallarel-token-worker"}`, arn)
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	id, err := SelfID(ctx, SelfEnv{MetadataURI: srv.URL + "/v4/abc"}, srv.Client())
	if err != nil || id != arn {
		t.Fatalf("SelfID = %q, %v", id, err)
	}
	if _, err := SelfID(ctx, SelfEnv{MetadataURI: srv.URL + "/v4/other"}, srv.Client()); err == nil {
		t.Fatal("404 accepted")
	}
	if id, err := SelfID(ctx, SelfEnv{}, nil); id != "" || err != nil {
		t.Fatalf("not a task: %q, %v", id, err)
	}
}

// recorder is a Launcher and Watcher that records calls.
type recorder struct{ calls []string }

func (r *recorder) Launch(_ context.Context, req Request) (Task, error) {
	r.calls = append(r.calls, "launch "+req.Token)
	return Task{ID: "new"}, nil
}
func (r *recorder) Stop(_ context.Context, task Task, reason string) error {
	r.calls = append(r.calls, "stop "+task.ID+" "+reason)
	return errors.New("unreachable")
}
func (r *recorder) TaskState(_ context.Context, task Task) (TaskState, error) {
	r.calls = append(r.calls, "state "+task.ID)
	return TaskState{Running: true}, nil
}

func TestSelfStopping(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inner := &recorder{}
	var stopped []string
	l := SelfStopping(inner, "arn:self", func(reason string) { stopped = append(stopped, reason) }, nil)
	if err := l.Stop(ctx, Task{ID: "arn:self"}, "report finished"); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(stopped) != "[report finished]" || len(inner.calls) != 0 {
		t.Fatalf("self stop: stopped %v, inner %v", stopped, inner.calls)
	}
	if err := l.Stop(ctx, Task{ID: "arn:other"}, "x"); err == nil {
		t.Fatal("another task's stop did not reach the inner launcher")
	}
	l.Launch(ctx, Request{Token: "t", Queue: "q"})
	w, ok := l.(Watcher)
	if !ok {
		t.Fatal("a Watcher's wrapper is not a Watcher")
	}
	w.TaskState(ctx, Task{ID: "arn:other"})
	if fmt.Sprint(inner.calls) != "[stop arn:other x launch t state arn:other]" {
		t.Fatalf("inner calls = %v", inner.calls)
	}
	if _, ok := SelfStopping(launchOnly{Func{LaunchFunc: inner.Launch}}, "arn:self", nil, nil).(Watcher); ok {
		t.Fatal("a non-Watcher's wrapper claims to be a Watcher")
	}
	// LAUNCHER=none stays a Noop that callers can recognise, and stops itself.
	stopped = nil
	n, ok := SelfStopping(Noop{}, "arn:self", func(reason string) { stopped = append(stopped, reason) }, nil).(Noop)
	if !ok {
		t.Fatal("a Noop's wrapper is not a Noop")
	}
	if err := n.Stop(ctx, Task{ID: "arn:self"}, "idle"); err != nil || fmt.Sprint(stopped) != "[idle]" {
		t.Fatalf("noop self stop: %v, %v", err, stopped)
	}
	if err := n.Stop(ctx, Task{ID: "arn:other"}, "x"); err != nil || len(stopped) != 1 {
		t.Fatalf("noop stop of another task: %v, %v", err, stopped)
	}
	if SelfStopping(inner, "", nil, nil) != Launcher(inner) {
		t.Fatal("no self ID: the launcher is not returned as is")
	}
}

// launchOnly hides every method but Launcher's.
type launchOnly struct{ Launcher }
