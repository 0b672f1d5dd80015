package launcher

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"
)

// SelfEnv is what a worker knows about the task it runs in.
type SelfEnv struct {
	// MetadataURI is ECS_CONTAINER_METADATA_URI_V4, set by ECS in every
	// container; its /task document names the task's ARN.
	MetadataURI string
	// LaunchedBy is PALLAREL_LAUNCHED_BY ("local" in Local's workers, whose
	// task ID is "local-<pid>").
	LaunchedBy string
}

// SelfID returns the task ID this process runs as, as the launcher that
// started it recorded it: the ECS task ARN from the task metadata endpoint,
// "local-<pid>" in a Local worker, or "" when it was not launched as a task.
func SelfID(ctx context.Context, env SelfEnv, client *http.Client) (string, error) {
	switch {
	case env.MetadataURI != "":
		if client == nil {
			client = &http.Client{Timeout: 5 * time.Second}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.MetadataURI+"/task", nil)
		if err != nil {
			return "", fmt.Errorf("task metadata: %w", err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", fmt.Errorf("task metadata: %w", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("task metadata: %s: %.200s", resp.Status, body)
		}
		var doc struct {
			TaskARN string `json:"TaskARN"`
		}
		if err := json.Unmarshal(body, &doc); err != nil || doc.TaskARN == "" {
			return "", fmt.Errorf("task metadata: no TaskARN in %.200s (%v)", body, err)
		}
		return doc.TaskARN, nil
	case env.LaunchedBy == "local":
		return "local-" + strconv.Itoa(os.Getpid()), nil
	}
	return "", nil
}

// SelfStopping wraps the launcher of a worker that runs as a launched task,
// so that stopping its own task works from inside it. A token task has no
// ECS settings (its launcher is none or local) and a Local worker has no
// handle on its own process, so the finalizer's Stop of the task it runs
// in would otherwise do nothing and the task would idle until its timeout.
// Stop of selfID calls stopSelf (nil: SIGTERM to this process, as StopTask
// does: the worker finishes its jobs and exits 0, which ends the ECS
// task); any other task goes to inner. The result is a Watcher when inner
// is one, and a Noop stays a Noop (callers tell LAUNCHER=none by its type).
func SelfStopping(inner Launcher, selfID string, stopSelf func(reason string), log *slog.Logger) Launcher {
	if selfID == "" {
		return inner
	}
	if stopSelf == nil {
		stopSelf = func(string) { _ = syscall.Kill(os.Getpid(), syscall.SIGTERM) }
	}
	if n, ok := inner.(Noop); ok {
		n.SelfID, n.StopSelf = selfID, stopSelf
		if n.Logger == nil {
			n.Logger = log
		}
		return n
	}
	s := selfStopping{inner: inner, id: selfID, stop: stopSelf, log: cmp.Or(log, slog.Default())}
	if w, ok := inner.(Watcher); ok {
		return selfStoppingWatcher{s, w}
	}
	return s
}

type selfStopping struct {
	inner Launcher
	id    string
	stop  func(reason string)
	log   *slog.Logger
}

// Unwrap implements Unwrapper.
func (s selfStopping) Unwrap() Launcher { return s.inner }

func (s selfStopping) Launch(ctx context.Context, req Request) (Task, error) {
	return s.inner.Launch(ctx, req)
}

func (s selfStopping) Stop(ctx context.Context, task Task, reason string) error {
	if task.ID == s.id {
		s.log.InfoContext(ctx, "stopping the task this worker runs in", "task", task.ID, "reason", reason)
		s.stop(reason)
		return nil
	}
	return s.inner.Stop(ctx, task, reason)
}

type selfStoppingWatcher struct {
	selfStopping
	w Watcher
}

func (s selfStoppingWatcher) TaskState(ctx context.Context, task Task) (TaskState, error) {
	return s.w.TaskState(ctx, task)
}
