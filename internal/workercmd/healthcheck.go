package workercmd

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Health check settings (the binary's own variables, read by Main).
const (
	// HeartbeatFileEnv names the file the heartbeat rewrites after every
	// beat attempt and `worker -healthcheck` reads. Unset: no file (several
	// local workers on one machine must not share one).
	HeartbeatFileEnv = "WORKER_HEARTBEAT_FILE"
	// HealthcheckMaxAgeEnv is the oldest beat -healthcheck accepts, a Go
	// duration. Defaults to DefaultHealthcheckMaxAge.
	HealthcheckMaxAgeEnv = "WORKER_HEALTHCHECK_MAX_AGE"
	// DefaultHealthcheckMaxAge is Sidekiq's process TTL: a process that has
	// not beaten for that long is gone from the Web UI too.
	DefaultHealthcheckMaxAge = 60 * time.Second
)

// The heartbeat file records that the heartbeat loop ran, not that Redis
// answered: a Redis outage is not cured by replacing every worker (the
// Redis watch and --idle-timeout handle it), while a wedged process, whose
// loop stopped, is. So the file is written after every attempt, and the
// check needs neither Redis nor a network.

// writeBeat records one beat attempt at path.
func writeBeat(path string, at time.Time, beatErr error) error {
	status := "ok"
	if beatErr != nil {
		status = "redis error: " + beatErr.Error()
	}
	body := strconv.FormatInt(at.Unix(), 10) + " " + status + "\n"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("heartbeat file: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		return fmt.Errorf("heartbeat file: %w", err)
	}
	if err := os.Chtimes(tmp, at, at); err != nil {
		return fmt.Errorf("heartbeat file: %w", err)
	}
	// A rename, so the check never reads a half-written file.
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("heartbeat file: %w", err)
	}
	return nil
}

// healthcheck is `worker -healthcheck`: 0 when the heartbeat file was
// written at most maxAge ago, 1 when it is older or missing, 2 when no file
// is configured. It prints why on stderr (ECS keeps the output).
func healthcheck(lookup func(string) (string, bool), now time.Time, stderr io.Writer) int {
	path, _ := lookup(HeartbeatFileEnv)
	if path == "" {
		fmt.Fprintf(stderr, "worker -healthcheck: %s is not set, so no heartbeat is recorded\n", HeartbeatFileEnv)
		return 2
	}
	maxAge := DefaultHealthcheckMaxAge
	if v, ok := lookup(HealthcheckMaxAgeEnv); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			fmt.Fprintf(stderr, "worker -healthcheck: %s=%q: want a positive duration such as 60s\n", HealthcheckMaxAgeEnv, v)
			return 2
		}
		maxAge = d
	}
	fi, err := os.Stat(path)
	if err != nil {
		fmt.Fprintf(stderr, "worker -healthcheck: no heartbeat yet: %v\n", err)
		return 1
	}
	age := now.Sub(fi.ModTime())
	if age > maxAge {
		fmt.Fprintf(stderr, "worker -healthcheck: last heartbeat %s ago (more than %s): the worker is wedged\n", age.Round(time.Second), maxAge)
		return 1
	}
	fmt.Fprintf(stderr, "worker -healthcheck: last heartbeat %s ago\n", age.Round(time.Second))
	return 0
}
