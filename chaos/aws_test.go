package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/pallarel/pallarel/internal/e2etest"
)

// flakyS3 is an in-process S3-compatible server (gofakes3) that answers
// 500 to the first failZip writes of the result ZIP, then works.
type flakyS3 struct {
	srv     *httptest.Server
	failZip atomic.Int64
	failed  atomic.Int64
	zipPuts atomic.Int64
	backend *s3mem.Backend
}

// refuseS3 answers a write with an S3 error document, after reading the
// body so the client sees the store's error rather than a reset.
func refuseS3(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, msg)
}

func newFlakyS3(t *testing.T, failZip int) *flakyS3 {
	f := &flakyS3{backend: s3mem.New()}
	f.failZip.Store(int64(failZip))
	if err := f.backend.CreateBucket("reports"); err != nil {
		t.Fatal(err)
	}
	fake := gofakes3.New(f.backend).Server()
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodPut || r.Method == http.MethodPost) && strings.Contains(r.URL.Path, "/reports/reports/") {
			f.zipPuts.Add(1)
			if f.failZip.Add(-1) >= 0 {
				f.failed.Add(1)
				refuseS3(w, r, http.StatusInternalServerError, "InternalError", "injected fault")
				return
			}
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// s3Env points the pipeline at the S3-compatible server at url.
func s3Env(url string) []string {
	return []string{
		"LOCAL_SAVE=", // blank: S3, as Rails' blank? (any non-blank value is local)
		"REPORT_S3_BUCKET_NAME=reports",
		"AWS_REGION=ap-northeast-1",
		"AWS_ACCESS_KEY_ID=test",
		"AWS_SECRET_ACCESS_KEY=test",
		"AWS_ENDPOINT_URL_S3=" + url,
		"S3_FORCE_PATH_STYLE=true",
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// Case 5: S3 answering errors while the ZIP is uploaded: the upload is
// retried and succeeds; no partial object is left; every row is there.
func TestS3ErrorsDuringZipUpload(t *testing.T) {
	s3 := newFlakyS3(t, 6)
	c := newCluster(t, append(s3Env(s3.srv.URL), "LAUNCHER=local")...)
	// The report worker launches each token's worker as a local process.
	c.worker("report", 2, "report", "default")
	n := 300
	u := c.upload(makeCSV("S3", n), "text")
	s := c.waitFinished(u.Token, 150*time.Second)
	if s.State != "completed" {
		t.Fatalf("run: %+v", s)
	}
	if s3.failed.Load() == 0 {
		t.Fatal("no fault was injected: the ZIP upload never reached the flaky path")
	}
	t.Logf("ZIP writes: %d, failed by injection: %d", s3.zipPuts.Load(), s3.failed.Load())
	// Download goes through a presigned URL to the fake S3.
	expectIntact(t, c.verify(u.Token, "S3", n), 0)
	// The row files go right after the report is marked completed (they
	// must outlive a failed completion, which retries the ZIP).
	var keys []string
	deadline := time.Now().Add(15 * time.Second)
	for {
		objs, err := s3.backend.ListBucket("reports", &gofakes3.Prefix{}, gofakes3.ListBucketPage{})
		if err != nil {
			t.Fatal(err)
		}
		keys = keys[:0]
		left := 0
		for _, o := range objs.Contents {
			keys = append(keys, o.Key)
			if strings.HasPrefix(o.Key, "rows/") {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d row files left behind after the run completed", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !contains(keys, "reports/"+u.Token+".zip") {
		t.Fatalf("result object missing: %v", keys)
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// fakeECS speaks ECS's JSON 1.1 protocol. RunTask fails with throttling,
// then with a capacity failure, then starts the worker of the container
// override as a real local process; StopTask stops it.
type fakeECS struct {
	t       *testing.T
	c       *cluster
	srv     *httptest.Server
	mu      sync.Mutex
	calls   map[string]int
	running map[string]*exec.Cmd
	stopped []string
	reasons []string
}

func newFakeECS(t *testing.T) *fakeECS {
	f := &fakeECS{t: t, calls: map[string]int{}, running: map[string]*exec.Cmd{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		f.srv.Close()
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, cmd := range f.running {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return f
}

func (f *fakeECS) serve(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonEC2ContainerServiceV20141113.")
	var in map[string]any
	json.NewDecoder(r.Body).Decode(&in)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	reply := func(v any) { json.NewEncoder(w).Encode(v) }
	switch op {
	case "ListTasks":
		reply(map[string]any{"taskArns": []string{}})
	case "RunTask":
		switch f.calls[op] {
		case 1:
			w.WriteHeader(400)
			reply(map[string]any{"__type": "ThrottlingException", "message": "Rate exceeded"})
			return
		case 2:
			reply(map[string]any{"tasks": []any{}, "failures": []any{map[string]any{"arn": "arn:aws:ecs:ap-northeast-1:1:container-instance/x", "reason": "RESOURCE:CPU"}}})
			return
		}
		arn := fmt.Sprintf("arn:aws:ecs:ap-northeast-1:123456789012:task/test/%d", f.calls[op])
		ov := in["overrides"].(map[string]any)["containerOverrides"].([]any)[0].(map[string]any)
		var argv []string
		for _, a := range ov["command"].([]any) {
			argv = append(argv, a.(string))
		}
		env := append([]string(nil), f.c.env...)
		for _, e := range ov["environment"].([]any) {
			m := e.(map[string]any)
			env = append(env, fmt.Sprintf("%s=%s", m["name"], m["value"]))
		}
		// The task definition's entryPoint /app/worker (here, our build)
		// gets the override's command as its arguments.
		cmd := exec.Command(filepath.Join(binDir, "worker"), append(argv, "--process-ttl", "3s")...)
		cmd.Env = env
		cmd.Dir = f.c.dir
		log := &e2etest.Buffer{}
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			w.WriteHeader(500)
			reply(map[string]any{"__type": "ServerException", "message": err.Error()})
			return
		}
		f.running[arn] = cmd
		reply(map[string]any{"tasks": []any{map[string]any{"taskArn": arn, "lastStatus": "PROVISIONING", "startedBy": in["startedBy"]}}})
	case "DescribeTasks":
		var tasks []any
		for _, a := range in["tasks"].([]any) {
			tasks = append(tasks, map[string]any{"taskArn": a, "lastStatus": "RUNNING"})
		}
		reply(map[string]any{"tasks": tasks})
	case "StopTask":
		arn, _ := in["task"].(string)
		reason, _ := in["reason"].(string)
		if cmd := f.running[arn]; cmd != nil {
			cmd.Process.Signal(syscall.SIGTERM)
			go cmd.Wait()
			delete(f.running, arn)
		}
		f.stopped = append(f.stopped, arn)
		f.reasons = append(f.reasons, reason)
		reply(map[string]any{"task": map[string]any{"taskArn": arn, "lastStatus": "STOPPED"}})
	default:
		w.WriteHeader(400)
		reply(map[string]any{"__type": "InvalidParameterException", "message": "unexpected " + op})
	}
}

// Case 6: ECS RunTask failing (throttling, then capacity) is retried with
// backoff; the task is recorded, runs the token's rows as a real worker
// process, and is stopped when the report is done: none left running.
func TestECSRunTaskFailuresRetried(t *testing.T) {
	ecs := newFakeECS(t)
	c := newCluster(t,
		"LAUNCHER=ecs", "ECS_CLUSTER=test", "ECS_SIDEKIQ_TASK_DEFINITION=pallarel-sidekiq:1",
		"ECS_SIDEKIQ_SUBNET_IDS=subnet-a,subnet-b", "ECS_SIDEKIQ_SECURITY_GROUP_IDS=sg-a",
		"AWS_ENDPOINT_URL_ECS="+ecs.srv.URL, "AWS_REGION=ap-northeast-1",
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_EC2_METADATA_DISABLED=true")
	ecs.c = c
	c.worker("report", 2, "report", "default")
	n := 200
	u := c.upload(makeCSV("E", n), "text")
	if s := c.waitFinished(u.Token, 120*time.Second); s.State != "completed" {
		t.Fatalf("run: %+v", s)
	}
	expectIntact(t, c.verify(u.Token, "E", n), 0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ecs.mu.Lock()
		left, stopped := len(ecs.running), len(ecs.stopped)
		calls := fmt.Sprint(ecs.calls)
		reasons := append([]string(nil), ecs.reasons...)
		ecs.mu.Unlock()
		if left == 0 && stopped == 1 {
			t.Logf("ECS calls: %s; stop reasons %q", calls, reasons)
			if ecs.calls["RunTask"] != 3 {
				t.Fatalf("RunTask calls %d, want 3 (throttled, capacity failure, success)", ecs.calls["RunTask"])
			}
			if !strings.Contains(reasons[0], u.Token) {
				t.Fatalf("stop reason %q does not name the token", reasons[0])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tasks left running %d, stopped %d; calls %s", left, stopped, calls)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
