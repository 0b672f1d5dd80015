package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"

	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/config"
	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/internal/servercmd"
	"github.com/pallarel/pallarel/internal/workercmd"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/launcher/ecstest"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
)

// taskDef is the part of an ECS task definition (register-task-definition
// --cli-input-json) these tests read.
type taskDef struct {
	Family                  string   `json:"family"`
	RequiresCompatibilities []string `json:"requiresCompatibilities"`
	NetworkMode             string   `json:"networkMode"`
	CPU                     string   `json:"cpu"`
	Memory                  string   `json:"memory"`
	ExecutionRoleArn        string   `json:"executionRoleArn"`
	TaskRoleArn             string   `json:"taskRoleArn"`
	Tags                    []struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	} `json:"tags"`
	ContainerDefinitions []struct {
		Name        string   `json:"name"`
		Image       string   `json:"image"`
		Essential   bool     `json:"essential"`
		EntryPoint  []string `json:"entryPoint"`
		Command     []string `json:"command"`
		StopTimeout int      `json:"stopTimeout"`
		HealthCheck *struct {
			Command     []string `json:"command"`
			Interval    int      `json:"interval"`
			Timeout     int      `json:"timeout"`
			Retries     int      `json:"retries"`
			StartPeriod int      `json:"startPeriod"`
		} `json:"healthCheck"`
		PortMappings []struct {
			ContainerPort int `json:"containerPort"`
		} `json:"portMappings"`
		Environment []struct {
			Name, Value string
		} `json:"environment"`
		Secrets []struct {
			Name      string `json:"name"`
			ValueFrom string `json:"valueFrom"`
		} `json:"secrets"`
		LogConfiguration struct {
			LogDriver string            `json:"logDriver"`
			Options   map[string]string `json:"options"`
		} `json:"logConfiguration"`
	} `json:"containerDefinitions"`
}

func loadJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func loadTaskDef(t *testing.T, name string) taskDef {
	t.Helper()
	var td taskDef
	loadJSON(t, filepath.Join("ecs", name+".json"), &td)
	return td
}

// env returns the container's environment as ECS sets it, secrets as
// given (ECS reads them from SSM).
func (td taskDef) env(secrets map[string]string) map[string]string {
	out := map[string]string{}
	for _, e := range td.ContainerDefinitions[0].Environment {
		out[e.Name] = e.Value
	}
	for _, s := range td.ContainerDefinitions[0].Secrets {
		if v, ok := secrets[s.Name]; ok {
			out[s.Name] = v
		}
	}
	return out
}

var taskDefs = []string{"web", "report-worker", "token-worker"}

// fargateMemory lists the memory (MiB) Fargate allows for each CPU size.
func fargateMemory(cpu int) (lo, hi, step int) {
	switch cpu {
	case 256:
		return 512, 2048, 512 // 512, 1024, 2048 (1536 is refused too; checked below)
	case 512:
		return 1024, 4096, 1024
	case 1024:
		return 2048, 8192, 1024
	case 2048:
		return 4096, 16384, 1024
	case 4096:
		return 8192, 30720, 1024
	}
	return 0, 0, 0
}

var gomemlimitRule = regexp.MustCompile(`^(\d+)MiB$`)

func TestTaskDefinitions(t *testing.T) {
	t.Parallel()
	for _, name := range taskDefs {
		t.Run(name, func(t *testing.T) {
			td := loadTaskDef(t, name)
			if !strings.HasPrefix(td.Family, "pallarel-") || !slices.Equal(td.RequiresCompatibilities, []string{"FARGATE"}) || td.NetworkMode != "awsvpc" {
				t.Errorf("family %q, compatibilities %v, network %q", td.Family, td.RequiresCompatibilities, td.NetworkMode)
			}
			cpu, _ := strconv.Atoi(td.CPU)
			mem, _ := strconv.Atoi(td.Memory)
			lo, hi, step := fargateMemory(cpu)
			if lo == 0 || mem < lo || mem > hi || (mem-lo)%step != 0 || (cpu == 256 && mem == 1536) {
				t.Errorf("cpu %s / memory %s is not a Fargate size", td.CPU, td.Memory)
			}
			if len(td.ContainerDefinitions) != 1 {
				t.Fatalf("%d containers, want 1", len(td.ContainerDefinitions))
			}
			c := td.ContainerDefinitions[0]
			if !c.Essential || c.StopTimeout < 30 || c.StopTimeout > 120 {
				t.Errorf("essential %v, stopTimeout %d (Fargate: up to 120; the worker needs its -t 25 s)", c.Essential, c.StopTimeout)
			}
			// The entry point owns the binary; see the argv test below.
			if len(c.EntryPoint) != 1 || !strings.HasPrefix(c.EntryPoint[0], "/app/") {
				t.Errorf("entryPoint %v", c.EntryPoint)
			}
			env := td.env(nil)
			// GOMEMLIMIT leaves the runtime's own and the kernel's share of
			// the task's memory: 70-90 %.
			m := gomemlimitRule.FindStringSubmatch(env["GOMEMLIMIT"])
			if m == nil {
				t.Errorf("GOMEMLIMIT %q, want NMiB", env["GOMEMLIMIT"])
			} else if limit, _ := strconv.Atoi(m[1]); limit*10 < mem*7 || limit*10 > mem*9 {
				t.Errorf("GOMEMLIMIT %s for a %d MiB task, want 70-90 %%", env["GOMEMLIMIT"], mem)
			}
			// Any non-blank LOCAL_SAVE means local, "false" too, as in
			// the Rails app: the tasks save to S3 by leaving it out.
			if strings.TrimSpace(env["LOCAL_SAVE"]) != "" || env["REPORT_S3_BUCKET_NAME"] == "" || env["AWS_REGION"] == "" {
				t.Errorf("storage env %v", env)
			}
			secrets := map[string]bool{}
			for _, s := range c.Secrets {
				secrets[s.Name] = true
				if !strings.HasPrefix(s.ValueFrom, "arn:aws:ssm:ap-northeast-1:123456789012:parameter/pallarel/") {
					t.Errorf("secret %s from %q, outside the execution role's parameters", s.Name, s.ValueFrom)
				}
			}
			if !secrets["REDIS_URL"] || !secrets["DATABASE_URL"] {
				t.Errorf("secrets %v lack REDIS_URL or DATABASE_URL", secrets)
			}
			lc := c.LogConfiguration
			if lc.LogDriver != "awslogs" || lc.Options["awslogs-group"] != "/ecs/pallarel" || lc.Options["awslogs-stream-prefix"] == "" {
				t.Errorf("log configuration %+v", lc)
			}
			// The log mode is stated, not left to the account's default
			// (non-blocking since 2025); non-blocking needs its buffer.
			switch lc.Options["mode"] {
			case "blocking":
			case "non-blocking":
				if !regexp.MustCompile(`^\d+[km]$`).MatchString(lc.Options["max-buffer-size"]) {
					t.Errorf("mode non-blocking with max-buffer-size %q", lc.Options["max-buffer-size"])
				}
			default:
				t.Errorf("log mode %q, want blocking or non-blocking", lc.Options["mode"])
			}
			// Every setting is one the configuration accepts.
			cfg, err := config.Load(mapLookup(td.env(map[string]string{
				"REDIS_URL": "redis://redis.internal:6379/0", "DATABASE_URL": "mysql://u:p@db.internal/pallarel",
				"BASIC_AUTH_USER": "admin", "BASIC_AUTH_PASSWORD": "pw", "SECRET_KEY_BASE": strings.Repeat("s", 64),
			})))
			if err != nil {
				t.Errorf("config: %v", err)
			}
			if c.EntryPoint[0] == "/app/server" {
				checkWeb(t, td, cfg)
			} else {
				checkWorkerHealth(t, td)
			}
		})
	}
}

// checkWeb: the web task gets SECRET_KEY_BASE from SSM (the server
// refuses production auth without it), and its stopTimeout leaves the
// server's shutdown grace room before ECS's SIGKILL.
func checkWeb(t *testing.T, td taskDef, cfg config.Config) {
	t.Helper()
	c := td.ContainerDefinitions[0]
	// The web server's supervisor launches token tasks too: it must hold
	// them to the report worker's caps (both count the same slots).
	rcfg, err := config.Load(mapLookup(loadTaskDef(t, "report-worker").env(map[string]string{"REDIS_URL": "redis://r:6379/0", "DATABASE_URL": "mysql://u:p@db/x"})))
	if err != nil {
		t.Fatal(err)
	}
	wf, rf := cfg.Fleet, rcfg.Fleet
	if wf.MaxWorkers != rf.MaxWorkers || wf.MaxPerRun != rf.MaxPerRun || wf.Target != rf.Target || cfg.ECS.Cluster != rcfg.ECS.Cluster || cfg.ECS.TaskDefinition != rcfg.ECS.TaskDefinition {
		t.Errorf("web fleet %+v / ECS %s %s, report worker %+v / %s %s: want the same", cfg.Fleet, cfg.ECS.Cluster, cfg.ECS.TaskDefinition,
			rcfg.Fleet, rcfg.ECS.Cluster, rcfg.ECS.TaskDefinition)
	}
	if err := servercmd.CheckProductionWeb(cfg); err != nil {
		t.Errorf("the web task as configured: %v", err)
	}
	cfg.SecretKeyBase = ""
	if !cfg.AuthOn() || servercmd.CheckProductionWeb(cfg) == nil {
		t.Error("the web task has no auth, or the server would start in production with auth and no SECRET_KEY_BASE")
	}
	if grace := servercmd.ShutdownGrace; time.Duration(c.StopTimeout)*time.Second < grace+5*time.Second {
		t.Errorf("stopTimeout %ds: want the shutdown grace %s plus at least 5 s", c.StopTimeout, grace)
	}
	if c.HealthCheck != nil {
		t.Error("the web container has a healthCheck: the load balancer checks /up (the image has no shell or curl)")
	}
	var tg struct {
		Port            int
		TargetType      string
		HealthCheckPath string
		HealthCheckPort string
		Matcher         struct{ HttpCode string }
	}
	loadJSON(t, filepath.Join("elb", "web-target-group.json"), &tg)
	if len(c.PortMappings) != 1 || tg.Port != c.PortMappings[0].ContainerPort || tg.TargetType != "ip" || tg.HealthCheckPort != "traffic-port" {
		t.Errorf("target group %+v for port mappings %+v (awsvpc needs target type ip)", tg, c.PortMappings)
	}
	// /up, not /readyz: /readyz checks Redis and the database, so a Redis
	// blip would fail every web task at once and the service replace them.
	if tg.HealthCheckPath != "/up" || tg.Matcher.HttpCode != "200" {
		t.Errorf("target group health check %s → %s, want /up → 200", tg.HealthCheckPath, tg.Matcher.HttpCode)
	}
}

// checkWorkerHealth: a worker container is checked by `worker
// -healthcheck`, which reads the heartbeat file the task's environment
// names, within its interval and timeout limits.
func checkWorkerHealth(t *testing.T, td taskDef) {
	t.Helper()
	c := td.ContainerDefinitions[0]
	hc := c.HealthCheck
	if hc == nil {
		t.Fatal("no healthCheck: a wedged worker would stay healthy")
	}
	if want := []string{"CMD", c.EntryPoint[0], "-healthcheck"}; !slices.Equal(hc.Command, want) {
		t.Errorf("healthCheck command %q, want %q (exec form: the image has no shell)", hc.Command, want)
	}
	// ECS's limits: interval 5-300, timeout 2-60, retries 1-10, startPeriod 0-300.
	if hc.Interval < 5 || hc.Interval > 300 || hc.Timeout < 2 || hc.Timeout > 60 || hc.Timeout >= hc.Interval ||
		hc.Retries < 1 || hc.Retries > 10 || hc.StartPeriod < 0 || hc.StartPeriod > 300 {
		t.Errorf("healthCheck %+v outside ECS's limits", *hc)
	}
	env := td.env(nil)
	if !strings.HasPrefix(env[workercmd.HeartbeatFileEnv], "/tmp/") {
		t.Errorf("%s = %q, want a file under /tmp (the image's writable directory)", workercmd.HeartbeatFileEnv, env[workercmd.HeartbeatFileEnv])
	}
}

func mapLookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// policy is an IAM policy document.
type policy struct {
	Version   string
	Statement []struct {
		Sid       string
		Effect    string
		Action    stringList
		Resource  stringList
		Principal map[string]string
		Condition map[string]map[string]string
	}
}

// stringList is IAM's "one string or a list".
type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*s = []string{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(s))
}

func loadPolicy(t *testing.T, name string) policy {
	t.Helper()
	var p policy
	loadJSON(t, filepath.Join("iam", name+".json"), &p)
	if p.Version != "2012-10-17" {
		t.Fatalf("%s: version %q", name, p.Version)
	}
	for _, s := range p.Statement {
		if s.Effect != "Allow" {
			t.Errorf("%s/%s: effect %q", name, s.Sid, s.Effect)
		}
		for _, a := range s.Action {
			if strings.Contains(a, "*") {
				t.Errorf("%s/%s: wildcard action %q", name, s.Sid, a)
			}
		}
	}
	return p
}

// allows reports whether p allows action on resource, returning the
// conditions of the statement that does.
func (p policy) allows(action, resource string) (map[string]map[string]string, bool) {
	for _, s := range p.Statement {
		if !slices.Contains(s.Action, action) {
			continue
		}
		for _, r := range s.Resource {
			if ok, _ := filepath.Match(r, resource); ok || r == resource ||
				(strings.HasSuffix(r, "*") && strings.HasPrefix(resource, strings.TrimSuffix(r, "*"))) {
				return s.Condition, true
			}
		}
	}
	return nil, false
}

const (
	account    = "123456789012"
	clusterArn = "arn:aws:ecs:ap-northeast-1:" + account + ":cluster/pallarel"
)

func TestIAMPolicies(t *testing.T) {
	t.Parallel()
	token, web, report := loadTaskDef(t, "token-worker"), loadTaskDef(t, "web"), loadTaskDef(t, "report-worker")
	app := loadPolicy(t, "app-task-role-policy")
	tokenRole := loadPolicy(t, "token-worker-task-role-policy")
	exec := loadPolicy(t, "execution-role-policy")
	trust := loadPolicy(t, "task-role-trust-policy")
	execTrust := loadPolicy(t, "execution-role-trust-policy")

	for name, p := range map[string]policy{"task roles": trust, "execution role": execTrust} {
		if len(p.Statement) != 1 || p.Statement[0].Principal["Service"] != "ecs-tasks.amazonaws.com" || !slices.Equal(p.Statement[0].Action, []string{"sts:AssumeRole"}) {
			t.Errorf("%s trust policy %+v", name, p.Statement)
		}
		if p.Statement[0].Condition["StringEquals"]["aws:SourceAccount"] != account {
			t.Errorf("%s trust policy: condition %v, want aws:SourceAccount %s", name, p.Statement[0].Condition, account)
		}
	}
	// Task roles: the account and ECS resources of the region, as the
	// task IAM role guide gives. The execution role is assumed by the
	// agent on the task's behalf, with the task-role ARN conditions
	// left out, as the execution role guide gives it.
	if trust.Statement[0].Condition["ArnLike"]["aws:SourceArn"] != "arn:aws:ecs:ap-northeast-1:"+account+":*" {
		t.Errorf("task role trust: condition %v, want aws:SourceArn ArnLike the region's ECS ARNs", trust.Statement[0].Condition)
	}
	if _, ok := execTrust.Statement[0].Condition["ArnLike"]; ok || len(execTrust.Statement[0].Condition) != 1 {
		t.Errorf("execution role trust: condition %v, want aws:SourceAccount alone", execTrust.Statement[0].Condition)
	}
	if web.TaskRoleArn != report.TaskRoleArn || web.TaskRoleArn == token.TaskRoleArn {
		t.Errorf("roles: web %s, report %s, token %s: the launching tasks share one role, the token task has its own", web.TaskRoleArn, report.TaskRoleArn, token.TaskRoleArn)
	}

	// RunTask of the token task definition, in the cluster only.
	cond, ok := app.allows("ecs:RunTask", "arn:aws:ecs:ap-northeast-1:"+account+":task-definition/"+token.Family+":3")
	if !ok || cond["ArnEquals"]["ecs:cluster"] != clusterArn {
		t.Errorf("RunTask of %s: allowed %v, condition %v", token.Family, ok, cond)
	}
	if _, ok := app.allows("ecs:RunTask", "arn:aws:ecs:ap-northeast-1:"+account+":task-definition/"+web.Family+":1"); ok {
		t.Error("the app role may run any task definition")
	}
	// Tag-on-create: TagResource only as part of RunTask.
	cond, ok = app.allows("ecs:TagResource", "arn:aws:ecs:ap-northeast-1:"+account+":task/pallarel/abc")
	if !ok || cond["StringEquals"]["ecs:CreateAction"] != "RunTask" {
		t.Errorf("TagResource: allowed %v, condition %v (want ecs:CreateAction RunTask)", ok, cond)
	}
	for _, a := range []string{"ecs:DescribeTasks", "ecs:StopTask"} {
		if _, ok := app.allows(a, "arn:aws:ecs:ap-northeast-1:"+account+":task/pallarel/abc"); !ok {
			t.Errorf("%s on the cluster's tasks not allowed", a)
		}
		if _, ok := app.allows(a, "arn:aws:ecs:ap-northeast-1:"+account+":task/other/abc"); ok {
			t.Errorf("%s allowed on another cluster's tasks", a)
		}
	}
	if cond, ok := app.allows("ecs:ListTasks", "*"); !ok || cond["ArnEquals"]["ecs:cluster"] != clusterArn {
		t.Errorf("ListTasks: allowed %v, condition %v", ok, cond)
	}
	// PassRole: exactly the token task's roles, to ECS tasks only.
	for _, role := range []string{token.ExecutionRoleArn, token.TaskRoleArn} {
		cond, ok := app.allows("iam:PassRole", role)
		if !ok || cond["StringEquals"]["iam:PassedToService"] != "ecs-tasks.amazonaws.com" {
			t.Errorf("PassRole %s: allowed %v, condition %v", role, ok, cond)
		}
	}
	if _, ok := app.allows("iam:PassRole", web.TaskRoleArn); ok {
		t.Error("the app role may pass itself")
	}
	// The token task needs no ECS permission: it stops itself by exiting.
	for _, s := range tokenRole.Statement {
		for _, a := range s.Action {
			if !strings.HasPrefix(a, "s3:") {
				t.Errorf("token task role allows %s", a)
			}
		}
	}
	// Storage: objects of the bucket, and listing it.
	for _, p := range []policy{app, tokenRole} {
		for _, a := range []string{"s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"} {
			if _, ok := p.allows(a, "arn:aws:s3:::your-report-bucket/reports/x.zip"); !ok {
				t.Errorf("%s not allowed", a)
			}
		}
		if _, ok := p.allows("s3:ListBucket", "arn:aws:s3:::your-report-bucket"); !ok {
			t.Error("s3:ListBucket not allowed")
		}
	}
	// Execution role: pull, logs, the secrets the task definitions name.
	for _, td := range []taskDef{web, report, token} {
		for _, s := range td.ContainerDefinitions[0].Secrets {
			if _, ok := exec.allows("ssm:GetParameters", s.ValueFrom); !ok {
				t.Errorf("%s: secret %s not readable by the execution role", td.Family, s.ValueFrom)
			}
		}
		group := td.ContainerDefinitions[0].LogConfiguration.Options["awslogs-group"]
		for _, a := range []string{"logs:CreateLogStream", "logs:PutLogEvents"} {
			if _, ok := exec.allows(a, "arn:aws:logs:ap-northeast-1:"+account+":log-group:"+group+":log-stream:x"); !ok {
				t.Errorf("%s: %s on %s not allowed", td.Family, a, group)
			}
		}
		if _, ok := exec.allows("ecr:BatchGetImage", "arn:aws:ecr:ap-northeast-1:"+account+":repository/pallarel"); !ok || !strings.Contains(td.ContainerDefinitions[0].Image, "/pallarel:") {
			t.Errorf("%s: image %s not pullable", td.Family, td.ContainerDefinitions[0].Image)
		}
	}
	if cond, ok := exec.allows("kms:Decrypt", "arn:aws:kms:ap-northeast-1:"+account+":key/00000000-0000-0000-0000-000000000000"); !ok ||
		cond["StringEquals"]["kms:ViaService"] != "ssm.ap-northeast-1.amazonaws.com" {
		t.Errorf("kms:Decrypt: allowed %v, condition %v", ok, cond)
	}
}

// image is what the Dockerfile's final stage gives a container.
type image struct {
	env        map[string]string
	entryPoint []string
	binaries   []string // names under /app/
}

func loadImage(t *testing.T) image {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img := image{env: map[string]string{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "FROM "):
			img.env, img.entryPoint = map[string]string{}, nil
		case strings.HasPrefix(line, "ENV "):
			for _, kv := range strings.Fields(strings.TrimPrefix(line, "ENV ")) {
				k, v, _ := strings.Cut(kv, "=")
				img.env[k] = v
			}
		case strings.HasPrefix(line, "ENTRYPOINT "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "ENTRYPOINT ")), &img.entryPoint); err != nil {
				t.Fatalf("Dockerfile ENTRYPOINT: %v", err)
			}
		case strings.Contains(line, "go build") && strings.Contains(line, "-o /out/"):
			for _, f := range strings.Fields(line) {
				if name, ok := strings.CutPrefix(f, "./cmd/"); ok {
					img.binaries = append(img.binaries, name)
				}
			}
		}
	}
	return img
}

// containerArgv joins entryPoint and command as ECS (Docker) does: the
// task definition's entryPoint replaces the image's; the override's
// command replaces the task definition's, and is appended to the entry
// point.
func containerArgv(img image, td taskDef, override map[string]any) []string {
	c := td.ContainerDefinitions[0]
	argv := slices.Clone(img.entryPoint)
	if c.EntryPoint != nil {
		argv = slices.Clone(c.EntryPoint)
	}
	cmd := c.Command
	if o, ok := override["command"].([]any); ok {
		cmd = nil
		for _, a := range o {
			cmd = append(cmd, a.(string))
		}
	}
	return append(argv, cmd...)
}

// TestTokenTaskStartsAsECSStartsIt builds the token task's container from
// deploy/ecs/token-worker.json and the RunTask request the launcher sends
// with the report worker's settings, as ECS does: entryPoint + the
// override's command, the image's, task definition's, secrets' and
// override's environment merged, and the ECS task metadata endpoint. It
// runs the real worker binary with it: the worker must start, consume its
// token queue, and, told to stop its own task (IdleShutdownJob → the
// finalizer's stop path), end it by exiting 0.
func TestTokenTaskStartsAsECSStartsIt(t *testing.T) {
	t.Parallel()
	img := loadImage(t)
	tokenTD, reportTD := loadTaskDef(t, "token-worker"), loadTaskDef(t, "report-worker")
	rdb := redistest.New(t)
	dir := t.TempDir()
	dbURL := "sqlite://" + filepath.Join(dir, "pallarel.sqlite3")
	secrets := map[string]string{"REDIS_URL": rdb.URL(), "DATABASE_URL": dbURL}

	// The launcher as the report worker's task configures it.
	cfg, err := config.Load(mapLookup(reportTD.env(secrets)))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Launcher != config.LauncherECS {
		t.Fatalf("report worker launcher = %q", cfg.Launcher)
	}
	fake := ecstest.New(t)
	var names []string
	for _, c := range tokenTD.ContainerDefinitions {
		names = append(names, c.Name)
	}
	fake.Register(tokenTD.Family, names...)
	// Its tags, which propagateTags copies: ECS refuses a RunTask that
	// repeats one of their keys.
	tdTags := map[string]string{}
	for _, tg := range tokenTD.Tags {
		tdTags[tg.Key] = tg.Value
	}
	if len(tdTags) == 0 || !cfg.ECS.PropagateTags {
		t.Fatalf("token task definition tags %v, propagate %v: the repeated-key check would test nothing", tdTags, cfg.ECS.PropagateTags)
	}
	fake.TagTaskDefinition(tokenTD.Family, tdTags)
	l, err := launcher.NewECS(cfg.ECS, fake.Client(cfg.ECS.WithDefaults().MaxAttempts))
	if err != nil {
		t.Fatal(err)
	}
	token := router.NewToken()
	rt, err := router.New(cfg.QueueHexLen)
	if err != nil {
		t.Fatal(err)
	}
	queue, err := rt.For(token)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	task, err := l.Launch(ctx, launcher.Request{Token: token, Queue: queue})
	if err != nil {
		t.Fatalf("launch against the ECS endpoint: %v", err)
	}
	run := fake.Last("RunTask")
	if run["taskDefinition"] != tokenTD.Family {
		t.Fatalf("RunTask of %v, want %s", run["taskDefinition"], tokenTD.Family)
	}
	override := run["overrides"].(map[string]any)["containerOverrides"].([]any)[0].(map[string]any)

	argv := containerArgv(img, tokenTD, override)
	bin, ok := strings.CutPrefix(argv[0], "/app/")
	if !ok || !slices.Contains(img.binaries, bin) {
		t.Fatalf("the container runs %q; the image has /app/%v", argv[0], img.binaries)
	}
	if want := []string{"/app/worker", "-q", queue, "-c", "10"}; !slices.Equal(argv, want) {
		t.Fatalf("argv = %q, want %q", argv, want)
	}

	// Environment: image, task definition, secrets, override, then what
	// ECS itself adds (the metadata endpoint; credentials come from the
	// task role there and from static keys here).
	meta := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v4/token-task/task" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"Cluster": clusterArn, "TaskARN": task.ID, "Family": tokenTD.Family, "DesiredStatus": "RUNNING"})
	}))
	t.Cleanup(meta.Close)
	env := map[string]string{}
	for k, v := range img.env {
		env[k] = v
	}
	for k, v := range tokenTD.env(secrets) {
		env[k] = v
	}
	for _, e := range override["environment"].([]any) {
		kv := e.(map[string]any)
		env[kv["name"].(string)] = kv["value"].(string)
	}
	env["ECS_CONTAINER_METADATA_URI_V4"] = meta.URL + "/v4/token-task"
	env["AWS_EXECUTION_ENV"] = "AWS_ECS_FARGATE"
	env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = "AKIDTEST", "secret"
	env["AWS_EC2_METADATA_DISABLED"] = "true"
	env["DATA_DIR"] = filepath.Join(dir, "data") // the image's /tmp/pallarel, kept inside the test
	env[workercmd.HeartbeatFileEnv] = filepath.Join(dir, strings.TrimPrefix(env[workercmd.HeartbeatFileEnv], "/"))
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}

	// The run the task serves, as SplitCsvJob leaves it, and one job.
	db, err := models.Open(ctx, models.DBConfig{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close(db) })
	if err := models.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	store := models.NewStore(db)
	if _, err := store.CreateStatus(ctx, token, queue, 0); err != nil {
		t.Fatal(err)
	}
	if err := store.RecordWorker(ctx, token, task.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	job, err := sidekiq.NewActiveJob(sidekiq.Dialect8, contract.Idle.Name, queue, token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sidekiq.NewClient(rdb.Pool, sidekiq.ClientOptions{}).Push(ctx, job); err != nil {
		t.Fatal(err)
	}

	workerBin := buildWorker(t)
	// The override ECS used to get (the binary path in command) makes
	// the worker exit 2: the test tells the two apart.
	bad := exec.Command(workerBin, append([]string{"/app/worker"}, argv[1:]...)...)
	bad.Env = environ
	if out, err := bad.CombinedOutput(); exitCode(err) != 2 || !strings.Contains(string(out), "/app/worker") {
		t.Fatalf("entryPoint + a command holding the binary: exit %d, %s", exitCode(err), out)
	}

	runCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(runCtx, workerBin, argv[1:]...)
	cmd.Env = environ
	cmd.Dir = dir
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	err = cmd.Run()
	if exitCode(err) != 0 {
		t.Fatalf("token task exited %d (%v); logs:\n%s", exitCode(err), err, logs.String())
	}
	if n, _ := redis.Int(rdb.Do(t, "LLEN", "queue:"+queue), nil); n != 0 {
		t.Fatalf("%d jobs left in %s; logs:\n%s", n, queue, logs.String())
	}
	if n, _ := redis.Int(rdb.Do(t, "GET", "stat:processed"), nil); n < 1 {
		t.Fatalf("stat:processed = %d; logs:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "stopping the task this worker runs in") || !strings.Contains(logs.String(), task.ID) {
		t.Fatalf("the worker did not stop its own task; logs:\n%s", logs.String())
	}
	// The container's healthCheck, run as ECS runs it, in the same
	// environment: the worker just beat, so it is healthy.
	hc := tokenTD.ContainerDefinitions[0].HealthCheck.Command
	if hc[1] != argv[0] {
		t.Fatalf("healthCheck runs %s, the container %s", hc[1], argv[0])
	}
	check := exec.Command(workerBin, hc[2:]...)
	check.Env = environ
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("healthCheck %q: %v\n%s", hc, err, out)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// buildWorker builds cmd/worker as the Dockerfile does (static).
func buildWorker(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = "/usr/local/go/bin/go"
	}
	out := filepath.Join(t.TempDir(), "worker")
	cmd := exec.Command(gobin, "build", "-o", out, "./cmd/worker")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/worker: %v\n%s", err, b)
	}
	return out
}
