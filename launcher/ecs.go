package launcher

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"
)

// ECS defaults.
const (
	DefaultRegion        = "ap-northeast-1"
	DefaultContainerName = "sidekiqContainer"
	DefaultConcurrency   = 10
	DefaultMaxAttempts   = 5
	DefaultPollInterval  = 5 * time.Second
	DefaultBaseBackoff   = time.Second
	DefaultMaxBackoff    = 30 * time.Second
	// DefaultDescribeGrace is how long after a launch a task DescribeTasks
	// does not know yet (MISSING) still counts as starting: ECS's API is
	// eventually consistent.
	DefaultDescribeGrace = 2 * time.Minute
)

// CapacityProvider is one item of a capacity provider strategy, such as
// FARGATE_SPOT with weight 3 and FARGATE with base 1.
type CapacityProvider struct {
	Name   string
	Weight int32
	Base   int32
}

// ECSConfig says how to run the per-token worker task on ECS Fargate, as
// the Rails app's SplitCsvJob does.
type ECSConfig struct {
	// Cluster is ECS_CLUSTER. Required.
	Cluster string
	// TaskDefinition is ECS_SIDEKIQ_TASK_DEFINITION (family[:revision] or ARN). Required.
	TaskDefinition string
	// Subnets is ECS_SIDEKIQ_SUBNET_IDS. Required.
	Subnets []string
	// SecurityGroups is ECS_SIDEKIQ_SECURITY_GROUP_IDS.
	SecurityGroups []string
	// ContainerName is the container to override. Defaults to "sidekiqContainer".
	ContainerName string
	// AssignPublicIP turns on a public IP (a public subnet without NAT
	// needs it to pull the image). Defaults to false (DISABLED).
	AssignPublicIP bool
	// PlatformVersion is the Fargate platform version; empty means LATEST.
	PlatformVersion string
	// CapacityProviders, when set, replaces launch type FARGATE with this
	// capacity provider strategy (e.g. FARGATE_SPOT). ECS refuses both.
	CapacityProviders []CapacityProvider
	// PropagateTags copies the task definition's tags to the task.
	PropagateTags bool
	// Env is the value of the task's Env tag (APP_ENV).
	Env string
	// Command is the container override's command: the ARGUMENTS appended
	// to the task definition's entryPoint, which owns the binary path
	// (/app/worker), as ECS and Docker join them. "{queue}", "{token}" and
	// "{concurrency}" are substituted. Defaults to
	// ["-q", "{queue}", "-c", "{concurrency}"].
	Command []string
	// Concurrency fills "{concurrency}". Defaults to 10.
	Concurrency int
	// WaitRunning is how long Launch waits for the task to reach RUNNING.
	// 0 means Launch returns right after RunTask.
	WaitRunning time.Duration
	// PollInterval is the DescribeTasks interval while waiting. Defaults to 5s.
	PollInterval time.Duration
	// MaxAttempts caps RunTask attempts on capacity and quota failures
	// (failures[] in a 200 answer, or a quota error) and on throttling
	// the SDK's own retries (NewECSClient gives them the same cap) did not
	// outlast. Past it a capacity, quota or throttling answer is a
	// WaitError: the run waits and the supervisor tries again. Defaults
	// to 5.
	MaxAttempts int
	// BaseBackoff is the first delay after a capacity failure, doubled per
	// attempt with jitter up to MaxBackoff. Default 1s and 30s.
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// DescribeGrace is how long after its launch a task that DescribeTasks
	// answers MISSING still counts as starting. Defaults to 2m.
	DescribeGrace time.Duration
}

// DefaultCommand returns the override command used when ECSConfig.Command
// is empty: the worker's arguments for the token queue with {concurrency}
// (10) threads. The binary comes from the task definition's entryPoint.
func DefaultCommand() []string {
	return []string{"-q", "{queue}", "-c", "{concurrency}"}
}

// WithDefaults returns c with zero fields filled.
func (c ECSConfig) WithDefaults() ECSConfig {
	c.ContainerName = cmp.Or(c.ContainerName, DefaultContainerName)
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, DefaultMaxAttempts)
	c.BaseBackoff = cmp.Or(c.BaseBackoff, DefaultBaseBackoff)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, DefaultMaxBackoff)
	c.DescribeGrace = cmp.Or(c.DescribeGrace, DefaultDescribeGrace)
	if len(c.Command) == 0 {
		c.Command = DefaultCommand()
	}
	return c
}

// Validate names every missing or bad field.
func (c ECSConfig) Validate() error {
	var errs []error
	if c.Cluster == "" {
		errs = append(errs, errors.New("ecs: cluster is required"))
	}
	if c.TaskDefinition == "" {
		errs = append(errs, errors.New("ecs: task definition is required"))
	}
	if len(c.Subnets) == 0 {
		errs = append(errs, errors.New("ecs: at least one subnet is required"))
	}
	if c.Concurrency < 0 || c.MaxAttempts < 0 || c.WaitRunning < 0 || c.PollInterval < 0 || c.DescribeGrace < 0 {
		errs = append(errs, errors.New("ecs: concurrency, max attempts, wait, poll interval and describe grace must not be negative"))
	}
	if len(c.Command) > 0 && strings.HasPrefix(c.Command[0], "/") {
		// ECS appends the override to the entryPoint: a path here runs
		// "/app/worker /app/worker -q …" and the worker exits 2.
		errs = append(errs, fmt.Errorf("ecs: command %q starts with a path; it holds only the arguments appended to the task definition's entryPoint", c.Command[0]))
	}
	if err := validateCapacityProviders(c.CapacityProviders); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// validateCapacityProviders applies RunTask's rules to a strategy.
func validateCapacityProviders(cps []CapacityProvider) error {
	var errs []error
	bases := 0
	for _, p := range cps {
		if p.Name == "" || p.Weight < 0 || p.Weight > 1000 || p.Base < 0 || p.Base > 100000 {
			errs = append(errs, fmt.Errorf("ecs: capacity provider %+v: want a name, weight 0..1000, base 0..100000", p))
		}
		if p.Base > 0 {
			bases++
		}
	}
	if bases > 1 {
		errs = append(errs, errors.New("ecs: only one capacity provider may have a base"))
	}
	if len(cps) > 20 {
		errs = append(errs, errors.New("ecs: at most 20 capacity providers"))
	}
	return errors.Join(errs...)
}

// ParseCapacityProviders reads "FARGATE_SPOT:3,FARGATE:1:1" (name[:weight[:base]],
// weight defaulting to 1) and checks it as RunTask would.
func ParseCapacityProviders(s string) ([]CapacityProvider, error) {
	var out []CapacityProvider
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		parts := strings.Split(item, ":")
		if len(parts) > 3 || parts[0] == "" {
			return nil, fmt.Errorf("capacity provider %q: want name[:weight[:base]]", item)
		}
		p := CapacityProvider{Name: parts[0], Weight: 1}
		for i, dst := range []*int32{&p.Weight, &p.Base} {
			if len(parts) > i+1 {
				n, err := strconv.ParseInt(parts[i+1], 10, 32)
				if err != nil || n < 0 {
					return nil, fmt.Errorf("capacity provider %q: bad number %q", item, parts[i+1])
				}
				*dst = int32(n)
			}
		}
		out = append(out, p)
	}
	return out, validateCapacityProviders(out)
}

// ECS launches one Fargate task per token.
type ECS struct {
	cfg    ECSConfig
	client *ecs.Client
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func(d time.Duration) time.Duration
	log    *slog.Logger

	mu       sync.Mutex
	launched map[string]time.Time // task ARN → when this launcher started it
	stopped  map[string]time.Time // task ARN → when it was seen stopped
}

var (
	_ Launcher = (*ECS)(nil)
	_ Watcher  = (*ECS)(nil)
)

// ECSOption changes an ECS launcher; for tests and logging.
type ECSOption func(*ECS)

// WithClock sets the clock used for deadlines and StartedAt.
func WithClock(now func() time.Time) ECSOption { return func(e *ECS) { e.now = now } }

// WithSleep replaces the sleep between retries and polls, so tests do not wait.
func WithSleep(sleep func(ctx context.Context, d time.Duration) error) ECSOption {
	return func(e *ECS) { e.sleep = sleep }
}

// WithJitter replaces the random backoff jitter (d → actual delay).
func WithJitter(jitter func(d time.Duration) time.Duration) ECSOption {
	return func(e *ECS) { e.jitter = jitter }
}

// WithLogger sets the logger. Defaults to slog.Default().
func WithLogger(l *slog.Logger) ECSOption { return func(e *ECS) { e.log = l } }

// NewECS returns an ECS launcher; cfg is validated and defaulted.
func NewECS(cfg ECSConfig, client *ecs.Client, opts ...ECSOption) (*ECS, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if client == nil {
		return nil, errors.New("ecs: nil client")
	}
	e := &ECS{
		cfg:      cfg,
		client:   client,
		now:      time.Now,
		sleep:    sleepCtx,
		jitter:   fullJitter,
		log:      slog.Default(),
		launched: map[string]time.Time{},
		stopped:  map[string]time.Time{},
	}
	for _, o := range opts {
		o(e)
	}
	return e, nil
}

// NewECSClient builds an ECS client from the default AWS config chain
// (environment, shared config, IAM role). region defaults to
// ap-northeast-1; endpoint, when set, overrides the SDK's resolution
// (which also honours AWS_ENDPOINT_URL_ECS). maxAttempts (default 5) caps
// the SDK's own retries of throttling and transient errors; the launcher
// does not retry those again on top.
func NewECSClient(ctx context.Context, region, endpoint string, maxAttempts int) (*ecs.Client, error) {
	var opts []func(*config.LoadOptions) error
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load aws config: %w", err)
	}
	awsCfg.Region = cmp.Or(awsCfg.Region, DefaultRegion)
	return ecs.NewFromConfig(awsCfg, func(o *ecs.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		o.RetryMaxAttempts = cmp.Or(maxAttempts, DefaultMaxAttempts)
		o.RetryMode = aws.RetryModeStandard
	}), nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// fullJitter spreads retries: half the delay fixed, half random.
func fullJitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// backoff is the delay before retry number attempt (1-based).
func (e *ECS) backoff(attempt int) time.Duration {
	d := e.cfg.BaseBackoff << min(attempt-1, 20)
	if d <= 0 || d > e.cfg.MaxBackoff {
		d = e.cfg.MaxBackoff
	}
	return e.jitter(d)
}

var startedByInvalid = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// StartedBy is the ECS startedBy value for token: the token itself when it
// fits ECS's rule (≤36 of letters, digits, '-', '_'; a UUID does), else a
// hash of it. ListTasks finds a token's tasks by it.
func StartedBy(token string) string {
	if len(token) <= 36 && !startedByInvalid.MatchString(token) {
		return token
	}
	sum := sha1.Sum([]byte(token))
	return "t-" + hex.EncodeToString(sum[:])[:34]
}

// NewClientToken returns a RunTask idempotency token for one logical
// launch of token: a short hash of the token (to find it in CloudTrail)
// and 128 random bits, 43 characters. ECS answers a repeated token with
// the task it first started, for 24 hours even once that task stopped, so
// a token is never reused for a relaunch. The SDK's transport retries of
// one RunTask call resend the same input, hence the same token.
func NewClientToken(token string) string {
	sum := sha1.Sum([]byte(token))
	var r [16]byte
	_, _ = crand.Read(r[:]) // never fails (crypto/rand)
	return "p-" + hex.EncodeToString(sum[:4]) + "-" + hex.EncodeToString(r[:])
}

// Launch implements Launcher: reuse a live task for the token (unless
// req.Extra), else RunTask (again after capacity failures, each with a new
// clientToken), then wait for RUNNING if configured.
func (e *ECS) Launch(ctx context.Context, req Request) (Task, error) {
	if err := req.validate(); err != nil {
		return Task{}, err
	}
	var arn string
	if !req.Extra {
		var err error
		if arn, err = e.findLive(ctx, req.Token); err != nil {
			return Task{}, err
		}
	}
	if arn != "" {
		e.log.InfoContext(ctx, "reusing ecs task", "token", req.Token, "task", arn)
	} else {
		arns, err := e.runTask(ctx, req, 1)
		if err != nil {
			return Task{}, err
		}
		arn = arns[0]
		e.log.InfoContext(ctx, "started ecs task", "token", req.Token, "queue", req.Queue, "task", arn)
	}
	return e.track(ctx, arn)
}

// MaxRunTaskCount is the most tasks one RunTask call may start.
const MaxRunTaskCount = 10

// LaunchN starts n more workers for req's token (a run spread over
// several), in RunTask calls of at most MaxRunTaskCount tasks each. It
// returns the tasks started, also when a later call failed.
func (e *ECS) LaunchN(ctx context.Context, req Request, n int) ([]Task, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	var tasks []Task
	for n > 0 {
		count := min(n, MaxRunTaskCount)
		arns, err := e.runTask(ctx, req, count)
		for _, arn := range arns {
			t, terr := e.track(ctx, arn)
			if terr != nil {
				err = errors.Join(err, terr)
			}
			tasks = append(tasks, t)
		}
		if err != nil {
			return tasks, err
		}
		e.log.InfoContext(ctx, "started ecs tasks", "token", req.Token, "queue", req.Queue, "count", len(arns))
		n -= len(arns)
	}
	return tasks, nil
}

// track records a task this launcher started or reused and waits for it
// to run if configured.
func (e *ECS) track(ctx context.Context, arn string) (Task, error) {
	task := Task{ID: arn, StartedAt: e.now()}
	e.mu.Lock()
	if _, ok := e.launched[arn]; !ok {
		e.launched[arn] = task.StartedAt
	}
	e.pruneLocked()
	e.mu.Unlock()
	if e.cfg.WaitRunning > 0 {
		if err := e.waitRunning(ctx, task); err != nil {
			return task, err
		}
	}
	return task, nil
}

// pruneLocked forgets tasks older than a day (ECS forgets stopped tasks
// after about an hour anyway).
func (e *ECS) pruneLocked() {
	cutoff := e.now().Add(-24 * time.Hour)
	for arn, at := range e.launched {
		if at.Before(cutoff) {
			delete(e.launched, arn)
		}
	}
	for arn, at := range e.stopped {
		if at.Before(cutoff) {
			delete(e.stopped, arn)
		}
	}
}

// findLive returns the ARN of a task started for token that is starting
// or running. ListTasks takes startedBy as its only filter (ECS refuses it
// with desiredStatus) and so lists desired-RUNNING tasks; DescribeTasks then
// drops, client-side, the ones already stopping or stopped (ListTasks is
// eventually consistent) and those this launcher saw die.
func (e *ECS) findLive(ctx context.Context, token string) (string, error) {
	var arns []string
	p := ecs.NewListTasksPaginator(e.client, &ecs.ListTasksInput{
		Cluster:   aws.String(e.cfg.Cluster),
		StartedBy: aws.String(StartedBy(token)),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return "", fmt.Errorf("ecs list tasks for %s: %w", token, err)
		}
		arns = append(arns, page.TaskArns...)
	}
	e.mu.Lock()
	arns = slices.DeleteFunc(arns, func(a string) bool { _, dead := e.stopped[a]; return dead })
	e.mu.Unlock()
	for len(arns) > 0 {
		batch := arns[:min(len(arns), 100)] // DescribeTasks' limit
		arns = arns[len(batch):]
		out, err := e.client.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(e.cfg.Cluster), Tasks: batch})
		if err != nil {
			return "", fmt.Errorf("ecs describe tasks for %s: %w", token, err)
		}
		for _, t := range out.Tasks {
			if aws.ToString(t.DesiredStatus) == "RUNNING" && !stoppedStatus(aws.ToString(t.LastStatus)) {
				return aws.ToString(t.TaskArn), nil
			}
		}
		// A listed task DescribeTasks does not know yet has just started.
		for _, f := range out.Failures {
			if aws.ToString(f.Reason) == "MISSING" {
				return aws.ToString(f.Arn), nil
			}
		}
	}
	return "", nil
}

// stoppedStatus reports whether lastStatus means the containers are gone.
func stoppedStatus(last string) bool { return last == "STOPPED" || last == "DEPROVISIONING" }

// FailuresError is returned when RunTask keeps answering failures[].
type FailuresError struct {
	Failures []types.Failure
}

func (f *FailuresError) Error() string {
	parts := make([]string, len(f.Failures))
	for i, fl := range f.Failures {
		parts[i] = aws.ToString(fl.Reason)
		if d := aws.ToString(fl.Detail); d != "" {
			parts[i] += " (" + d + ")"
		}
		if a := aws.ToString(fl.Arn); a != "" {
			parts[i] += " " + a
		}
	}
	return "ecs run task failures: " + strings.Join(parts, "; ")
}

// spotCapacity reports whether ECS said Spot has no capacity ("Capacity is
// unavailable at this time. Please try again later or in a different
// availability zone").
func (f *FailuresError) spotCapacity() bool {
	for _, fl := range f.Failures {
		if strings.Contains(strings.ToLower(aws.ToString(fl.Reason)), "capacity is unavailable") {
			return true
		}
	}
	return false
}

// retryable reports whether f is capacity-like (worth another try) rather
// than a configuration mistake such as a missing task definition.
func (f *FailuresError) retryable() bool {
	for _, fl := range f.Failures {
		r := strings.ToUpper(aws.ToString(fl.Reason))
		if strings.Contains(r, "MISSING") || strings.Contains(r, "INACTIVE") {
			return false
		}
	}
	return true
}

// tags are the task's own tags. A tag key may appear once in a RunTask,
// counting the task definition's tags that PropagateTags copies: with it
// the task definition names the application (App), so the request adds
// only what is the launch's own, the run's Token and the Env.
func (e *ECS) tags(req Request) []types.Tag {
	var tags []types.Tag
	if !e.cfg.PropagateTags {
		tags = append(tags, types.Tag{Key: aws.String("App"), Value: aws.String("report")})
	}
	return append(tags,
		types.Tag{Key: aws.String("Token"), Value: aws.String(req.Token)},
		types.Tag{Key: aws.String("Env"), Value: aws.String(e.cfg.Env)})
}

// RunTaskInput is the request Launch sends for req, with clientToken.
// Exported so the deploy test can build the container's argv from it.
func (e *ECS) RunTaskInput(req Request, clientToken string) *ecs.RunTaskInput {
	publicIP := types.AssignPublicIpDisabled
	if e.cfg.AssignPublicIP {
		publicIP = types.AssignPublicIpEnabled
	}
	command := expand(e.cfg.Command, req)
	for i, a := range command {
		command[i] = strings.ReplaceAll(a, "{concurrency}", strconv.Itoa(e.cfg.Concurrency))
	}
	in := &ecs.RunTaskInput{
		Cluster:              aws.String(e.cfg.Cluster),
		TaskDefinition:       aws.String(e.cfg.TaskDefinition),
		Count:                aws.Int32(1),
		EnableECSManagedTags: true,
		StartedBy:            aws.String(StartedBy(req.Token)),
		ClientToken:          aws.String(clientToken),
		NetworkConfiguration: &types.NetworkConfiguration{AwsvpcConfiguration: &types.AwsVpcConfiguration{
			Subnets:        e.cfg.Subnets,
			SecurityGroups: e.cfg.SecurityGroups,
			AssignPublicIp: publicIP,
		}},
		Overrides: &types.TaskOverride{ContainerOverrides: []types.ContainerOverride{{
			Name:    aws.String(e.cfg.ContainerName),
			Command: command,
			Environment: []types.KeyValuePair{
				{Name: aws.String("TOKEN"), Value: aws.String(req.Token)},
				{Name: aws.String("QUEUE"), Value: aws.String(req.Queue)},
			},
		}}},
		Tags: e.tags(req),
	}
	if e.cfg.PlatformVersion != "" {
		in.PlatformVersion = aws.String(e.cfg.PlatformVersion)
	}
	if e.cfg.PropagateTags {
		in.PropagateTags = types.PropagateTagsTaskDefinition
	}
	if len(e.cfg.CapacityProviders) == 0 {
		in.LaunchType = types.LaunchTypeFargate
	}
	for _, p := range e.cfg.CapacityProviders {
		in.CapacityProviderStrategy = append(in.CapacityProviderStrategy, types.CapacityProviderStrategyItem{
			CapacityProvider: aws.String(p.Name), Weight: p.Weight, Base: p.Base,
		})
	}
	return in
}

// throttled reports whether err is throttling: the SDK's retryer has
// already backed off and retried it MaxAttempts times, so the launcher does
// not retry it again on top (that would multiply the calls into a
// throttled API); the run waits and the supervisor tries again.
func throttled(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.ErrorCode() {
	case "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException":
		return true
	}
	return false
}

// quotaError reports whether err is an API error for a quota on concurrent
// tasks or vCPUs ("You've reached the limit on the number of tasks you can
// run concurrently"), which the SDK does not retry: the launcher does, with
// backoff, as tasks end and free the quota.
func quotaError(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	return ae.ErrorCode() == "LimitExceededException" || quotaMessage(ae.ErrorMessage())
}

func quotaMessage(msg string) bool {
	return strings.Contains(strings.ToLower(msg), "reached the limit on the number of")
}

// onDemand returns the strategy with FARGATE_SPOT replaced by on-demand
// FARGATE, and whether there was Spot to replace.
func onDemand(cps []CapacityProvider) ([]CapacityProvider, bool) {
	var out []CapacityProvider
	spot := false
	for _, p := range cps {
		if p.Name == "FARGATE_SPOT" {
			spot = true
			continue
		}
		out = append(out, p)
	}
	if !spot {
		return cps, false
	}
	if !slices.ContainsFunc(out, func(p CapacityProvider) bool { return p.Name == "FARGATE" }) {
		out = append(out, CapacityProvider{Name: "FARGATE", Weight: 1})
	}
	return out, true
}

// runTask starts count tasks for req, retrying capacity and quota
// failures and throttling with backoff; after a Spot capacity failure the
// next try runs on on-demand Fargate. It returns the ARNs started (fewer
// than count when ECS placed only some, which is not an error). Capacity,
// quota and throttling that outlast MaxAttempts end in a *WaitError.
func (e *ECS) runTask(ctx context.Context, req Request, count int) ([]string, error) {
	strategy := e.cfg.CapacityProviders
	for attempt := 1; ; attempt++ {
		// A new logical launch each time: after failures[] no task was
		// started, and reusing the token could replay the failure.
		in := e.RunTaskInput(req, NewClientToken(req.Token))
		in.Count = aws.Int32(int32(count))
		if len(strategy) > 0 {
			in.CapacityProviderStrategy = in.CapacityProviderStrategy[:0]
			for _, p := range strategy {
				in.CapacityProviderStrategy = append(in.CapacityProviderStrategy, types.CapacityProviderStrategyItem{
					CapacityProvider: aws.String(p.Name), Weight: p.Weight, Base: p.Base,
				})
			}
		}
		out, err := e.client.RunTask(ctx, in)
		wait := false
		if err != nil {
			err = fmt.Errorf("ecs run task for %s: %w", req.Token, err)
			if throttled(err) {
				return nil, &WaitError{Ahead: -1, Err: err}
			}
			if !quotaError(err) {
				return nil, err
			}
			wait = true
		} else {
			var arns []string
			for _, t := range out.Tasks {
				if a := aws.ToString(t.TaskArn); a != "" {
					arns = append(arns, a)
				}
			}
			if len(arns) > 0 {
				return arns, nil
			}
			fe := &FailuresError{Failures: out.Failures}
			if len(fe.Failures) == 0 {
				fe.Failures = []types.Failure{{Reason: aws.String("no task returned")}}
			}
			err = fmt.Errorf("ecs run task for %s: %w", req.Token, fe)
			if !fe.retryable() {
				return nil, err
			}
			wait = true
			if fe.spotCapacity() {
				if od, ok := onDemand(strategy); ok {
					// Spot is short now; Fargate does not fall back by itself.
					e.log.WarnContext(ctx, "ecs: no Spot capacity, the next try runs on on-demand Fargate", "token", req.Token, "err", err)
					strategy = od
				}
			}
		}
		if attempt >= e.cfg.MaxAttempts {
			err = fmt.Errorf("after %d attempts: %w", attempt, err)
			if wait {
				return nil, &WaitError{Ahead: -1, Err: err}
			}
			return nil, err
		}
		d := e.backoff(attempt)
		e.log.WarnContext(ctx, "ecs run task failed, retrying", "token", req.Token, "attempt", attempt, "delay", d.Seconds(), "err", err)
		if serr := e.sleep(ctx, d); serr != nil {
			return nil, fmt.Errorf("ecs run task for %s: %w (last error: %w)", req.Token, serr, err)
		}
	}
}

// StoppedError is returned when the task stopped before it ran.
type StoppedError struct {
	TaskArn, StoppedReason string
}

func (s *StoppedError) Error() string {
	return fmt.Sprintf("ecs task %s stopped: %s", s.TaskArn, s.StoppedReason)
}

// waitRunning polls TaskState until the task is RUNNING, stopped, or
// WaitRunning passed.
func (e *ECS) waitRunning(ctx context.Context, task Task) error {
	deadline := e.now().Add(e.cfg.WaitRunning)
	for {
		st, last, err := e.describe(ctx, task)
		if err != nil {
			return err
		}
		if !st.Running {
			return &StoppedError{TaskArn: task.ID, StoppedReason: st.Reason}
		}
		if last == "RUNNING" {
			return nil
		}
		if !e.now().Before(deadline) {
			return fmt.Errorf("ecs task %s not running after %s (last status %s)", task.ID, e.cfg.WaitRunning, last)
		}
		if err := e.sleep(ctx, min(e.cfg.PollInterval, deadline.Sub(e.now()))); err != nil {
			return err
		}
	}
}

// TaskState implements Watcher with DescribeTasks. A stopped task's Reason
// is "stopCode: stoppedReason" followed by each container's exit code and
// reason. A task DescribeTasks does not know (MISSING) counts as starting
// for DescribeGrace after its launch (eventual consistency), and as
// stopped after that (ECS shows stopped tasks for at least an hour).
func (e *ECS) TaskState(ctx context.Context, task Task) (TaskState, error) {
	st, _, err := e.describe(ctx, task)
	return st, err
}

func (e *ECS) describe(ctx context.Context, task Task) (TaskState, string, error) {
	if task.ID == "" {
		return TaskState{Reason: "no task was launched"}, "", nil
	}
	out, err := e.client.DescribeTasks(ctx, &ecs.DescribeTasksInput{
		Cluster: aws.String(e.cfg.Cluster),
		Tasks:   []string{task.ID},
	})
	if err != nil {
		return TaskState{}, "", fmt.Errorf("ecs describe task %s: %w", task.ID, err)
	}
	if len(out.Tasks) == 0 {
		e.mu.Lock()
		started := task.StartedAt
		if at, ok := e.launched[task.ID]; ok && at.After(started) {
			started = at
		}
		e.mu.Unlock()
		if !started.IsZero() && e.now().Sub(started) < e.cfg.DescribeGrace {
			return TaskState{Running: true}, "MISSING", nil
		}
		reason := "ecs no longer knows the task"
		if len(out.Failures) > 0 {
			reason += " (" + (&FailuresError{Failures: out.Failures}).Error() + ")"
		}
		if e.markStopped(task.ID) {
			e.log.WarnContext(ctx, "ecs task gone", "task", task.ID, "reason", reason)
		}
		return TaskState{Reason: reason}, "MISSING", nil
	}
	t := out.Tasks[0]
	last := aws.ToString(t.LastStatus)
	if !stoppedStatus(last) {
		return TaskState{Running: true}, last, nil
	}
	reason := StopReason(t)
	if e.markStopped(task.ID) {
		e.log.WarnContext(ctx, "ecs task stopped", "task", task.ID, "reason", reason)
	}
	return TaskState{Reason: reason}, last, nil
}

// markStopped remembers that arn stopped; true the first time.
func (e *ECS) markStopped(arn string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.stopped[arn]; ok {
		return false
	}
	e.stopped[arn] = e.now()
	return true
}

// StopReason says why an ECS task stopped: "stopCode: stoppedReason", then
// "; container NAME exit N: reason" for each container that has either.
func StopReason(t types.Task) string {
	var b strings.Builder
	b.WriteString(cmp.Or(string(t.StopCode), "Stopped"))
	if r := aws.ToString(t.StoppedReason); r != "" {
		b.WriteString(": " + r)
	}
	for _, c := range t.Containers {
		if c.ExitCode == nil && aws.ToString(c.Reason) == "" {
			continue
		}
		b.WriteString("; container " + aws.ToString(c.Name))
		if c.ExitCode != nil {
			b.WriteString(" exit " + strconv.Itoa(int(*c.ExitCode)))
		}
		if r := aws.ToString(c.Reason); r != "" {
			b.WriteString(": " + r)
		}
	}
	return b.String()
}

// Stop implements Launcher with StopTask. A task ECS no longer knows is
// treated as stopped.
func (e *ECS) Stop(ctx context.Context, task Task, reason string) error {
	if task.ID == "" {
		return nil
	}
	if len(reason) > 255 { // StopTask's limit
		reason = reason[:255]
	}
	_, err := e.client.StopTask(ctx, &ecs.StopTaskInput{
		Cluster: aws.String(e.cfg.Cluster),
		Task:    aws.String(task.ID),
		Reason:  aws.String(reason),
	})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "InvalidParameterException" &&
			strings.Contains(strings.ToLower(ae.ErrorMessage()), "not found") {
			return nil
		}
		return fmt.Errorf("ecs stop task %s: %w", task.ID, err)
	}
	e.markStopped(task.ID)
	e.log.InfoContext(ctx, "stopped ecs task", "task", task.ID, "reason", reason)
	return nil
}
