package fleet_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/pallarel/pallarel/launcher/ecstest"
)

// ecsTasks runs each task the fake ECS starts as a sleep worker process
// with the container's command and environment, stops it on StopTask
// (SIGTERM, as ECS), and reports its exit to the fake as ECS would.
type ecsTasks struct {
	c    *cluster
	fake *ecstest.Server
	meta *httptest.Server

	mu    sync.Mutex
	procs map[string]*exec.Cmd // by task ARN
	wg    sync.WaitGroup
}

func newECSTasks(t *testing.T, c *cluster) *ecsTasks {
	e := &ecsTasks{c: c, fake: ecstest.New(t), procs: map[string]*exec.Cmd{}}
	e.meta = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// /v4/<n>/task: the task metadata endpoint of task number n.
		arn := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v4/"), "/task")
		json.NewEncoder(w).Encode(map[string]any{"TaskARN": arn})
	}))
	t.Cleanup(func() {
		e.mu.Lock()
		for _, cmd := range e.procs {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		e.mu.Unlock()
		e.wg.Wait()
		e.meta.Close()
	})
	e.fake.OnRun = e.run
	e.fake.OnStop = func(task ecstest.Task) {
		e.mu.Lock()
		cmd := e.procs[task.ARN]
		e.mu.Unlock()
		if cmd != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		}
	}
	return e
}

func (e *ecsTasks) run(task ecstest.Task) {
	ov := task.Request["overrides"].(map[string]any)["containerOverrides"].([]any)[0].(map[string]any)
	var args []string
	for _, a := range ov["command"].([]any) {
		args = append(args, a.(string))
	}
	env := map[string]string{
		"LAUNCHER":                      "none", // as deploy/ecs/token-worker.json
		"ECS_CONTAINER_METADATA_URI_V4": e.meta.URL + "/v4/" + task.ARN,
	}
	for _, kv := range ov["environment"].([]any) {
		m := kv.(map[string]any)
		env[m["name"].(string)] = m["value"].(string)
	}
	cmd := exec.Command(e.c.bin, append(args, "--idle-timeout", "1m")...)
	cmd.Env = e.c.environ(env)
	cmd.Stdout, cmd.Stderr = e.c.logs, e.c.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		e.fake.Kill(task.ARN, "TaskFailedToStart", err.Error(), -1, "")
		return
	}
	e.fake.SetLastStatus(task.ARN, "RUNNING")
	e.mu.Lock()
	e.procs[task.ARN] = cmd
	e.mu.Unlock()
	e.wg.Go(func() {
		err := cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		e.fake.Kill(task.ARN, "EssentialContainerExited", "Essential container in task exited", code, "")
		e.mu.Lock()
		delete(e.procs, task.ARN)
		e.mu.Unlock()
	})
}

// With RUN_TARGET_DURATION and the ECS launcher (launcher/ecstest, each
// task a real worker process): the run adds tasks while it would miss the
// target (RunTask with count), and stops them as it drains (StopTask).
func TestRunScalesOutWithECSTasks(t *testing.T) {
	t.Parallel()
	c := newCluster(t, map[string]string{
		"RUN_TARGET_DURATION":   "15s",
		"MAX_WORKERS_PER_RUN":   "4",
		"SLEEPWORKER_ROW_SLEEP": "20ms",
	})
	e := newECSTasks(t, c)
	for k, v := range map[string]string{
		"LAUNCHER": "ecs", "ECS_CLUSTER": "pallarel", "ECS_SIDEKIQ_TASK_DEFINITION": "pallarel-token-worker",
		"ECS_SIDEKIQ_SUBNET_IDS": "subnet-a", "ECS_SIDEKIQ_SECURITY_GROUP_IDS": "sg-1", "ECS_SIDEKIQ_CONCURRENCY": "2",
		"AWS_ENDPOINT_URL_ECS": e.fake.URL, "AWS_REGION": "ap-northeast-1", "AWS_ACCESS_KEY_ID": "AKIDTEST",
		"AWS_SECRET_ACCESS_KEY": "secret", "AWS_EC2_METADATA_DISABLED": "true",
	} {
		c.env[k] = v
	}
	c.startReportWorker()
	scaleRun(t, c, 3000)
	var counts, stops int
	for _, call := range e.fake.Calls() {
		switch call.Op {
		case "RunTask":
			counts++
			if n, _ := call.Body["count"].(json.Number).Int64(); n < 1 || n > 10 {
				t.Errorf("RunTask count %d", n)
			}
		case "StopTask":
			stops++
		}
	}
	if counts < 2 || stops < 1 {
		t.Fatalf("%d RunTask and %d StopTask calls: want the extra tasks started and stopped through ECS", counts, stops)
	}
}
