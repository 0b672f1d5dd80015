// Package ecstest is an httptest ECS endpoint for tests of the real
// aws-sdk-go-v2 ECS client. It speaks ECS's JSON 1.1 protocol for RunTask,
// ListTasks, DescribeTasks and StopTask and enforces the request rules the
// ECS API reference documents, so a launcher that breaks them fails here the
// way it would fail on AWS:
//   - ListTasks: startedBy must be the only filter; desiredStatus defaults to
//     RUNNING and PENDING returns nothing; at most 100 results a page.
//   - RunTask: launchType and capacityProviderStrategy are exclusive;
//     propagateTags SERVICE is refused; container overrides must name a
//     container of the task definition and stay under 8 KiB; startedBy is at
//     most 36 of [A-Za-z0-9_-]; clientToken is at most 64 of ASCII 33-126; a
//     repeated clientToken with the same request answers the original task,
//     even one that has stopped, and with another request is refused; tag
//     keys are unique, counting, with propagateTags TASK_DEFINITION, the
//     keys of the task definition's tags (which ECS copies to the task).
//   - DescribeTasks: a new task may be MISSING for its first describes
//     (eventual consistency, DescribeLag).
//   - StopTask: reason at most 255 characters; an unknown task is an
//     InvalidParameterException.
package ecstest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
)

// Region and Account are what the fake's ARNs and signatures use.
const (
	Region  = "ap-northeast-1"
	Account = "123456789012"
)

// Call is one request the fake received.
type Call struct {
	Op   string
	Body map[string]any
}

// Container is a container of a task as DescribeTasks shows it.
type Container struct {
	Name     string `json:"name"`
	ExitCode *int   `json:"exitCode,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// Task is a task the fake started.
type Task struct {
	ARN, Cluster, StartedBy, ClientToken string
	DesiredStatus, LastStatus            string
	StopCode, StoppedReason              string
	Containers                           []Container
	// Request is the RunTask body that started it.
	Request map[string]any
	// describes counts DescribeTasks calls that named it.
	describes int
}

// Server is the fake ECS endpoint.
type Server struct {
	URL string

	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	calls    []Call
	tasks    []*Task
	byToken  map[string]*Task // clientToken → the task it started
	taskDefs map[string][]string
	taskTags map[string]map[string]string // family → its tags

	// Throttle answers ThrottlingException to the next n calls of op.
	Throttle map[string]int
	// LoseResponse does the next n calls of op and then answers 500
	// ServerException, as when a response is lost: the SDK retries.
	LoseResponse map[string]int
	// Failures answers the next n RunTask calls with failures[] of
	// FailureReason (default RESOURCE:CPU) and no task.
	Failures      int
	FailureReason string
	// SpotShortage answers the next n RunTask calls whose capacity
	// provider strategy names FARGATE_SPOT as ECS does when Spot has no
	// capacity (failures[] "Capacity is unavailable at this time..."); a
	// request without Spot is served.
	SpotShortage int
	// MaxRunning is the account's quota of concurrent tasks (0: none):
	// a RunTask that would pass it starts nothing and answers failures[]
	// "You've reached the limit on the number of tasks you can run
	// concurrently", as ECS does.
	MaxRunning int
	// OnRun, when set, is called with each task RunTask starts, and
	// OnStop with each task StopTask stops, outside the server's lock
	// (a test runs a real worker for the task and stops it).
	OnRun, OnStop func(Task)
	// DescribeLag is how many DescribeTasks calls see a new task as
	// MISSING before it shows. Defaults to 1: ECS's eventual consistency.
	DescribeLag int
	// PageSize caps ListTasks pages. Defaults to 100, ECS's maximum.
	PageSize int

	notify []func() // OnRun and OnStop calls due once the lock is released
}

// New starts a fake ECS endpoint for the test. It knows the task
// definition "pallarel-token-worker" with container "sidekiqContainer"
// and tag App=pallarel, as deploy/ecs/token-worker.json; Register adds
// others.
func New(t testing.TB) *Server {
	s := &Server{
		t:             t,
		byToken:       map[string]*Task{},
		taskDefs:      map[string][]string{"pallarel-token-worker": {"sidekiqContainer"}},
		taskTags:      map[string]map[string]string{"pallarel-token-worker": {"App": "pallarel"}},
		Throttle:      map[string]int{},
		LoseResponse:  map[string]int{},
		FailureReason: "RESOURCE:CPU",
		DescribeLag:   1,
		PageSize:      100,
	}
	s.srv = httptest.NewServer(s)
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// Register makes a task definition family known with its container names.
// RunTask accepts "family", "family:N" and its ARN.
func (s *Server) Register(family string, containers ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.taskDefs[family] = containers
}

// TagTaskDefinition sets the tags of a registered family's task
// definition (what propagateTags TASK_DEFINITION copies to its tasks).
func (s *Server) TagTaskDefinition(family string, tags map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.taskTags[family] = tags
}

// Client returns an ECS client on the fake with static credentials and
// the SDK's standard retryer (maxAttempts attempts, no backoff delay, so
// tests do not wait).
func (s *Server) Client(maxAttempts int) *ecs.Client {
	return ecs.New(ecs.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = maxAttempts
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		}),
	})
}

// Calls returns every request received so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Ops returns the operation names received so far, in order.
func (s *Server) Ops() []string {
	var out []string
	for _, c := range s.Calls() {
		out = append(out, c.Op)
	}
	return out
}

// Last returns the body of the last call of op, failing the test if none.
func (s *Server) Last(op string) map[string]any {
	s.t.Helper()
	calls := s.Calls()
	for i := len(calls) - 1; i >= 0; i-- {
		if calls[i].Op == op {
			return calls[i].Body
		}
	}
	s.t.Fatalf("ecstest: no %s call", op)
	return nil
}

// Tasks returns a copy of every task started so far.
func (s *Server) Tasks() []Task {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Task, len(s.tasks))
	for i, t := range s.tasks {
		out[i] = *t
	}
	return out
}

// SetLastStatus moves a task through ECS's lifecycle (PROVISIONING,
// PENDING, RUNNING, ...).
func (s *Server) SetLastStatus(arn, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.task(arn).LastStatus = status
}

// Kill stops a task as ECS does when it dies: desired and last status
// STOPPED, stopCode and stoppedReason, and the container's exit code and
// reason (exitCode < 0 leaves it unset, as when the container never ran).
func (s *Server) Kill(arn, stopCode, stoppedReason string, exitCode int, containerReason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.task(arn)
	t.DesiredStatus, t.LastStatus, t.StopCode, t.StoppedReason = "STOPPED", "STOPPED", stopCode, stoppedReason
	for i := range t.Containers {
		if exitCode >= 0 {
			t.Containers[i].ExitCode = aws.Int(exitCode)
		}
		t.Containers[i].Reason = containerReason
	}
}

// Add puts a task in the fake as if someone else had started it.
func (s *Server) Add(t Task) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := t
	cp.describes = s.DescribeLag
	s.tasks = append(s.tasks, &cp)
}

func (s *Server) task(arn string) *Task {
	for _, t := range s.tasks {
		if t.ARN == arn {
			return t
		}
	}
	s.t.Fatalf("ecstest: no task %s", arn)
	return nil
}

// apiError is an ECS error answer.
type apiError struct {
	code, msg string
	status    int
}

func invalid(format string, args ...any) *apiError {
	return &apiError{"InvalidParameterException", fmt.Sprintf(format, args...), http.StatusBadRequest}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "AmazonEC2ContainerServiceV20141113.")
	if !ok || r.Header.Get("Content-Type") != "application/x-amz-json-1.1" || r.Method != http.MethodPost {
		s.t.Errorf("ecstest: unexpected request %s %s target=%q type=%q", r.Method, r.URL, target, r.Header.Get("Content-Type"))
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	auth := r.Header.Get("Authorization")
	if !strings.Contains(auth, "AWS4-HMAC-SHA256 Credential=") || !strings.Contains(auth, "/"+Region+"/ecs/aws4_request") {
		writeError(w, &apiError{"UnrecognizedClientException", "request not signed for ecs in " + Region, http.StatusBadRequest})
		return
	}
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		writeError(w, &apiError{"SerializationException", err.Error(), http.StatusBadRequest})
		return
	}
	s.mu.Lock()
	defer func() {
		notify := s.notify
		s.notify = nil
		s.mu.Unlock()
		for _, f := range notify {
			f()
		}
	}()
	s.calls = append(s.calls, Call{op, body})
	if s.Throttle[op] > 0 {
		s.Throttle[op]--
		writeError(w, &apiError{"ThrottlingException", "Rate exceeded", http.StatusBadRequest})
		return
	}
	var out any
	var err *apiError
	switch op {
	case "ListTasks":
		out, err = s.listTasks(body)
	case "RunTask":
		out, err = s.runTask(body)
	case "DescribeTasks":
		out, err = s.describeTasks(body)
	case "StopTask":
		out, err = s.stopTask(body)
	default:
		err = &apiError{"UnknownOperationException", op, http.StatusBadRequest}
	}
	if err == nil && s.LoseResponse[op] > 0 {
		s.LoseResponse[op]--
		err = &apiError{"ServerException", "response lost after the work was done", http.StatusInternalServerError}
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(out)
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", e.code)
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(map[string]any{"__type": e.code, "message": e.msg})
}

func str(body map[string]any, key string) string {
	v, _ := body[key].(string)
	return v
}

func clusterName(body map[string]any) string {
	c := str(body, "cluster")
	if c == "" {
		return "default"
	}
	if _, name, ok := strings.Cut(c, ":cluster/"); ok {
		return name
	}
	return c
}

func (s *Server) listTasks(body map[string]any) (any, *apiError) {
	if str(body, "startedBy") != "" {
		for _, f := range []string{"containerInstance", "family", "serviceName", "desiredStatus", "launchType", "daemonName"} {
			if _, set := body[f]; set {
				// The answer ECS gives (aws/aws-sdk-go-v2#1893).
				return nil, invalid("cannot specify startedBy with other arguments (%s)", f)
			}
		}
	}
	page := s.PageSize
	if n, ok := body["maxResults"].(json.Number); ok {
		m, _ := n.Int64()
		if m < 1 || m > 100 {
			return nil, invalid("maxResults must be between 1 and 100")
		}
		page = min(page, int(m))
	}
	desired := cmpOr(str(body, "desiredStatus"), "RUNNING")
	var arns []string
	for _, t := range s.tasks {
		if t.Cluster != clusterName(body) || t.DesiredStatus != desired {
			continue
		}
		if sb := str(body, "startedBy"); sb != "" && t.StartedBy != sb {
			continue
		}
		if f := str(body, "family"); f != "" && !strings.HasPrefix(str(t.Request, "taskDefinition"), f) {
			continue
		}
		arns = append(arns, t.ARN)
	}
	start := 0
	if tok := str(body, "nextToken"); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n > len(arns) {
			return nil, invalid("bad nextToken")
		}
		start = n
	}
	end := min(start+page, len(arns))
	out := map[string]any{"taskArns": arns[start:end]}
	if end < len(arns) {
		out["nextToken"] = strconv.Itoa(end)
	}
	return out, nil
}

var startedByRule = regexp.MustCompile(`^[A-Za-z0-9_-]{1,36}$`)

func (s *Server) runTask(body map[string]any) (any, *apiError) {
	if err := s.checkRunTask(body); err != nil {
		return nil, err
	}
	// Idempotency: the same token and request answer the original task.
	token := str(body, "clientToken")
	if token != "" {
		if t := s.byToken[token]; t != nil {
			if !sameRequest(t.Request, body) {
				return nil, invalid("the client token %q was used with a different request", token)
			}
			return map[string]any{"tasks": []any{s.describe(t)}, "failures": []any{}}, nil
		}
	}
	fail := func(reason, detail string) (any, *apiError) {
		return map[string]any{"tasks": []any{}, "failures": []any{map[string]any{
			"arn": "arn:aws:ecs:" + Region + ":" + Account + ":container-instance/x", "reason": reason, "detail": detail,
		}}}, nil
	}
	if s.Failures > 0 {
		s.Failures--
		return fail(s.FailureReason, "no capacity")
	}
	if s.SpotShortage > 0 && usesSpot(body) {
		s.SpotShortage--
		return fail("Capacity is unavailable at this time. Please try again later or in a different availability zone", "")
	}
	count := 1
	if c, ok := body["count"].(json.Number); ok {
		n, _ := c.Int64()
		count = int(n)
	}
	if s.MaxRunning > 0 && s.running()+count > s.MaxRunning {
		return fail("You've reached the limit on the number of tasks you can run concurrently", "")
	}
	family, _, _ := strings.Cut(taskDefName(str(body, "taskDefinition")), ":")
	var started []any
	var first *Task
	for range count {
		t := &Task{
			ARN:           fmt.Sprintf("arn:aws:ecs:%s:%s:task/%s/%032x", Region, Account, clusterName(body), len(s.tasks)+1),
			Cluster:       clusterName(body),
			StartedBy:     str(body, "startedBy"),
			ClientToken:   token,
			DesiredStatus: "RUNNING",
			LastStatus:    "PROVISIONING",
			Request:       body,
		}
		for _, c := range s.taskDefs[family] {
			t.Containers = append(t.Containers, Container{Name: c})
		}
		s.tasks = append(s.tasks, t)
		if s.OnRun != nil {
			s.notify = append(s.notify, func() { s.OnRun(*t) })
		}
		started = append(started, s.describe(t))
		if first == nil {
			first = t
		}
	}
	if token != "" {
		s.byToken[token] = first
	}
	return map[string]any{"tasks": started, "failures": []any{}}, nil
}

// running counts tasks not stopped.
func (s *Server) running() int {
	n := 0
	for _, t := range s.tasks {
		if t.DesiredStatus != "STOPPED" {
			n++
		}
	}
	return n
}

// Running returns how many tasks are not stopped.
func (s *Server) Running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running()
}

func usesSpot(body map[string]any) bool {
	cps, _ := body["capacityProviderStrategy"].([]any)
	for _, it := range cps {
		if item, _ := it.(map[string]any); str(item, "capacityProvider") == "FARGATE_SPOT" {
			return true
		}
	}
	return false
}

// taskDefName strips an ARN to family[:revision].
func taskDefName(td string) string {
	if _, rest, ok := strings.Cut(td, ":task-definition/"); ok {
		return rest
	}
	return td
}

func (s *Server) checkRunTask(body map[string]any) *apiError {
	td := taskDefName(str(body, "taskDefinition"))
	family, _, _ := strings.Cut(td, ":")
	containers, known := s.taskDefs[family]
	if !known {
		return &apiError{"ClientException", "Unable to describe task definition " + td, http.StatusBadRequest}
	}
	_, hasLaunchType := body["launchType"]
	cps, hasCPS := body["capacityProviderStrategy"].([]any)
	if hasLaunchType && hasCPS {
		return invalid("Specifying both a launch type and capacity provider strategy is not supported.")
	}
	if hasCPS {
		if len(cps) == 0 || len(cps) > 20 {
			return invalid("capacityProviderStrategy must have 1 to 20 items")
		}
		bases := 0
		for _, it := range cps {
			item, _ := it.(map[string]any)
			if str(item, "capacityProvider") == "" {
				return invalid("capacityProvider is required")
			}
			if b, ok := item["base"].(json.Number); ok && b.String() != "0" {
				bases++
			}
		}
		if bases > 1 {
			return invalid("Only one capacity provider in a strategy can have a base defined.")
		}
	}
	if v, ok := body["platformVersion"]; ok && v != "" && !hasCPS && str(body, "launchType") != "FARGATE" {
		return invalid("platformVersion is only supported for tasks using the Fargate launch type")
	}
	if p := str(body, "propagateTags"); p != "" && p != "TASK_DEFINITION" && p != "NONE" {
		return invalid("The specified propagateTags value %s is not supported for RunTask; use TASK_DEFINITION or NONE", p)
	}
	if c, ok := body["count"].(json.Number); ok {
		if n, _ := c.Int64(); n < 1 || n > 10 {
			return invalid("count must be between 1 and 10")
		}
	}
	if sb, ok := body["startedBy"]; ok && !startedByRule.MatchString(fmt.Sprint(sb)) {
		return invalid("startedBy must be up to 36 letters, numbers, hyphens and underscores")
	}
	if tok, ok := body["clientToken"]; ok {
		ts := fmt.Sprint(tok)
		if len(ts) == 0 || len(ts) > 64 || strings.IndexFunc(ts, func(r rune) bool { return r < 33 || r > 126 }) >= 0 {
			return invalid("clientToken must be 1 to 64 characters in the range 33-126")
		}
	}
	net, _ := body["networkConfiguration"].(map[string]any)
	vpc, _ := net["awsvpcConfiguration"].(map[string]any)
	subnets, _ := vpc["subnets"].([]any)
	if len(subnets) == 0 || len(subnets) > 16 {
		return invalid("Network Configuration must be provided when networkMode 'awsvpc' is specified (1 to 16 subnets).")
	}
	if sgs, _ := vpc["securityGroups"].([]any); len(sgs) > 5 {
		return invalid("at most 5 security groups")
	}
	if ip := str(vpc, "assignPublicIp"); ip != "" && ip != "ENABLED" && ip != "DISABLED" {
		return invalid("assignPublicIp must be ENABLED or DISABLED")
	}
	if ov, ok := body["overrides"].(map[string]any); ok {
		if b, _ := json.Marshal(ov); len(b) > 8192 {
			return invalid("Container Overrides length must be at most 8192")
		}
		cos, _ := ov["containerOverrides"].([]any)
		for _, c := range cos {
			name := str(c.(map[string]any), "name")
			if !slices.Contains(containers, name) {
				return invalid("Override for container named %s is not a container in the TaskDefinition.", name)
			}
		}
	}
	tags, _ := body["tags"].([]any)
	if len(tags) > 50 {
		return invalid("at most 50 tags")
	}
	keys := map[string]string{} // key → where it came from
	if str(body, "propagateTags") == "TASK_DEFINITION" {
		for k := range s.taskTags[family] {
			keys[k] = "the task definition's propagated tags"
		}
	}
	for _, tg := range tags {
		m, _ := tg.(map[string]any)
		k, v := str(m, "key"), str(m, "value")
		if k == "" || len(k) > 128 || len(v) > 256 || strings.HasPrefix(strings.ToLower(k), "aws:") {
			return invalid("bad tag %q=%q", k, v)
		}
		if from, dup := keys[k]; dup {
			// RunTask's reference: "a tag key can only be used once";
			// the propagated tags count.
			return invalid("Tag keys must be unique: %q is repeated (already in %s)", k, from)
		}
		keys[k] = "the request's tags"
	}
	return nil
}

func sameRequest(a, b map[string]any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func (s *Server) describe(t *Task) map[string]any {
	out := map[string]any{
		"taskArn":       t.ARN,
		"clusterArn":    "arn:aws:ecs:" + Region + ":" + Account + ":cluster/" + t.Cluster,
		"lastStatus":    t.LastStatus,
		"desiredStatus": t.DesiredStatus,
		"startedBy":     t.StartedBy,
		"containers":    t.Containers,
	}
	if t.StopCode != "" {
		out["stopCode"] = t.StopCode
	}
	if t.StoppedReason != "" {
		out["stoppedReason"] = t.StoppedReason
	}
	return out
}

func (s *Server) describeTasks(body map[string]any) (any, *apiError) {
	arns, _ := body["tasks"].([]any)
	if len(arns) == 0 || len(arns) > 100 {
		return nil, invalid("tasks must name 1 to 100 tasks")
	}
	tasks, failures := []any{}, []any{}
	for _, a := range arns {
		arn := fmt.Sprint(a)
		var found *Task
		for _, t := range s.tasks {
			if t.ARN == arn && t.Cluster == clusterName(body) {
				found = t
			}
		}
		if found != nil {
			found.describes++
		}
		if found == nil || found.describes <= s.DescribeLag {
			failures = append(failures, map[string]any{"arn": arn, "reason": "MISSING"})
			continue
		}
		tasks = append(tasks, s.describe(found))
	}
	return map[string]any{"tasks": tasks, "failures": failures}, nil
}

func (s *Server) stopTask(body map[string]any) (any, *apiError) {
	if len(str(body, "reason")) > 255 {
		return nil, invalid("reason must be at most 255 characters")
	}
	for _, t := range s.tasks {
		if t.ARN == str(body, "task") && t.Cluster == clusterName(body) {
			if t.DesiredStatus != "STOPPED" {
				t.DesiredStatus, t.LastStatus, t.StopCode = "STOPPED", "STOPPED", "UserInitiated"
				t.StoppedReason = str(body, "reason")
				if s.OnStop != nil {
					s.notify = append(s.notify, func() { s.OnStop(*t) })
				}
			}
			return map[string]any{"task": s.describe(t)}, nil
		}
	}
	return nil, invalid("The referenced task was not found.")
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
