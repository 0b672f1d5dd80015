package launcher

import (
	"cmp"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
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
)

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
	// AssignPublicIP turns on a public IP. Defaults to false (DISABLED).
	AssignPublicIP bool
	// Env is the value of the task's Env tag (APP_ENV).
	Env string
	// Command runs the worker; "{queue}", "{token}" and "{concurrency}" are
	// substituted. Defaults to ["/app/worker", "-q", "{queue}", "-c", "{concurrency}"].
	Command []string
	// Concurrency fills "{concurrency}". Defaults to 10.
	Concurrency int
	// WaitRunning is how long Launch waits for the task to reach RUNNING.
	// 0 means Launch returns right after RunTask.
	WaitRunning time.Duration
	// PollInterval is the DescribeTasks interval while waiting. Defaults to 5s.
	PollInterval time.Duration
	// MaxAttempts caps RunTask/StopTask attempts on throttling and capacity
	// failures. Defaults to 5.
	MaxAttempts int
	// BaseBackoff is the first retry delay, doubled per attempt with jitter
	// up to MaxBackoff. Default 1s and 30s.
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
}

// DefaultCommand returns the worker command used when ECSConfig.Command is
// empty: the worker on the token queue with {concurrency} (10) threads.
func DefaultCommand() []string {
	return []string{"/app/worker", "-q", "{queue}", "-c", "{concurrency}"}
}

// WithDefaults returns c with zero fields filled.
func (c ECSConfig) WithDefaults() ECSConfig {
	c.ContainerName = cmp.Or(c.ContainerName, DefaultContainerName)
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, DefaultMaxAttempts)
	c.BaseBackoff = cmp.Or(c.BaseBackoff, DefaultBaseBackoff)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, DefaultMaxBackoff)
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
	if c.Concurrency < 0 || c.MaxAttempts < 0 || c.WaitRunning < 0 || c.PollInterval < 0 {
		errs = append(errs, errors.New("ecs: concurrency, max attempts, wait and poll interval must not be negative"))
	}
	return errors.Join(errs...)
}

// ECS launches one Fargate task per token.
type ECS struct {
	cfg    ECSConfig
	client *ecs.Client
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func(d time.Duration) time.Duration
	log    *slog.Logger
}

var _ Launcher = (*ECS)(nil)

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
		cfg:    cfg,
		client: client,
		now:    time.Now,
		sleep:  sleepCtx,
		jitter: fullJitter,
		log:    slog.Default(),
	}
	for _, o := range opts {
		o(e)
	}
	return e, nil
}

// NewECSClient builds an ECS client from the default AWS config chain
// (environment, shared config, IAM role). region defaults to
// ap-northeast-1; endpoint, when set, overrides the SDK's resolution
// (which also honours AWS_ENDPOINT_URL_ECS).
func NewECSClient(ctx context.Context, region, endpoint string) (*ecs.Client, error) {
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

// ClientToken is the RunTask idempotency token for token (≤64 ASCII), so a
// retried RunTask cannot start a second task.
func ClientToken(token string) string {
	sum := sha1.Sum([]byte(token))
	return "pallarel-report-" + hex.EncodeToString(sum[:])
}

// Launch implements Launcher: reuse a live task for the token, else RunTask
// (retried on throttling and capacity failures), then wait for RUNNING.
func (e *ECS) Launch(ctx context.Context, req Request) (Task, error) {
	if err := req.validate(); err != nil {
		return Task{}, err
	}
	arn, err := e.findLive(ctx, req.Token)
	if err != nil {
		return Task{}, err
	}
	if arn != "" {
		e.log.InfoContext(ctx, "reusing ecs task", "token", req.Token, "task", arn)
	} else {
		arn, err = e.runTask(ctx, req)
		if err != nil {
			return Task{}, err
		}
		e.log.InfoContext(ctx, "started ecs task", "token", req.Token, "queue", req.Queue, "task", arn)
	}
	task := Task{ID: arn, StartedAt: e.now()}
	if e.cfg.WaitRunning > 0 {
		if err := e.waitRunning(ctx, arn); err != nil {
			return task, err
		}
	}
	return task, nil
}

// findLive returns the ARN of a PENDING or RUNNING task started for token.
func (e *ECS) findLive(ctx context.Context, token string) (string, error) {
	for _, status := range []types.DesiredStatus{types.DesiredStatusRunning, types.DesiredStatusPending} {
		var out *ecs.ListTasksOutput
		err := e.retry(ctx, "list tasks", func() error {
			var err error
			out, err = e.client.ListTasks(ctx, &ecs.ListTasksInput{
				Cluster:       aws.String(e.cfg.Cluster),
				StartedBy:     aws.String(StartedBy(token)),
				DesiredStatus: status,
			})
			return err
		})
		if err != nil {
			return "", fmt.Errorf("ecs list tasks for %s: %w", token, err)
		}
		if len(out.TaskArns) > 0 {
			return out.TaskArns[0], nil
		}
	}
	return "", nil
}

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

func (e *ECS) runTask(ctx context.Context, req Request) (string, error) {
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
		LaunchType:           types.LaunchTypeFargate,
		Count:                aws.Int32(1),
		EnableECSManagedTags: true,
		StartedBy:            aws.String(StartedBy(req.Token)),
		ClientToken:          aws.String(ClientToken(req.Token)),
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
		Tags: []types.Tag{
			{Key: aws.String("App"), Value: aws.String("report")},
			{Key: aws.String("Token"), Value: aws.String(req.Token)},
			{Key: aws.String("Env"), Value: aws.String(e.cfg.Env)},
		},
	}
	var arn string
	err := e.retry(ctx, "run task", func() error {
		out, err := e.client.RunTask(ctx, in)
		if err != nil {
			return err
		}
		if len(out.Failures) > 0 {
			return &FailuresError{Failures: out.Failures}
		}
		if len(out.Tasks) == 0 || aws.ToString(out.Tasks[0].TaskArn) == "" {
			return &FailuresError{Failures: []types.Failure{{Reason: aws.String("no task returned")}}}
		}
		arn = aws.ToString(out.Tasks[0].TaskArn)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("ecs run task for %s: %w", req.Token, err)
	}
	return arn, nil
}

// throttleCodes are the error codes AWS uses for rate limiting.
var throttleCodes = map[string]bool{
	"ThrottlingException": true, "Throttling": true, "TooManyRequestsException": true,
	"RequestLimitExceeded": true, "ServerException": true, "ServiceUnavailable": true,
}

func isRetryable(err error) bool {
	var fe *FailuresError
	if errors.As(err, &fe) {
		return fe.retryable()
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && throttleCodes[ae.ErrorCode()]
}

// retry runs fn up to MaxAttempts times while it fails with a retryable error.
func (e *ECS) retry(ctx context.Context, what string, fn func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		if err = fn(); err == nil || !isRetryable(err) {
			return err
		}
		if attempt >= e.cfg.MaxAttempts {
			return fmt.Errorf("after %d attempts: %w", attempt, err)
		}
		d := e.backoff(attempt)
		e.log.WarnContext(ctx, "ecs call failed, retrying", "op", what, "attempt", attempt, "delay", d.Seconds(), "err", err)
		if serr := e.sleep(ctx, d); serr != nil {
			return fmt.Errorf("%w (last error: %w)", serr, err)
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

// waitRunning polls DescribeTasks until lastStatus is RUNNING, the task
// stopped, or WaitRunning passed.
func (e *ECS) waitRunning(ctx context.Context, arn string) error {
	deadline := e.now().Add(e.cfg.WaitRunning)
	last := "UNKNOWN"
	for {
		var out *ecs.DescribeTasksOutput
		err := e.retry(ctx, "describe tasks", func() error {
			var err error
			out, err = e.client.DescribeTasks(ctx, &ecs.DescribeTasksInput{
				Cluster: aws.String(e.cfg.Cluster),
				Tasks:   []string{arn},
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("ecs describe task %s: %w", arn, err)
		}
		if len(out.Tasks) > 0 {
			t := out.Tasks[0]
			last = aws.ToString(t.LastStatus)
			switch last {
			case "RUNNING":
				return nil
			case "STOPPED", "DEPROVISIONING", "STOPPING":
				if last == "STOPPED" || aws.ToString(t.DesiredStatus) == "STOPPED" {
					return &StoppedError{TaskArn: arn, StoppedReason: cmp.Or(aws.ToString(t.StoppedReason), string(t.StopCode), last)}
				}
			}
		} else if len(out.Failures) > 0 {
			return fmt.Errorf("ecs describe task %s: %w", arn, &FailuresError{Failures: out.Failures})
		}
		if !e.now().Before(deadline) {
			return fmt.Errorf("ecs task %s not running after %s (last status %s)", arn, e.cfg.WaitRunning, last)
		}
		if err := e.sleep(ctx, min(e.cfg.PollInterval, deadline.Sub(e.now()))); err != nil {
			return err
		}
	}
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
	err := e.retry(ctx, "stop task", func() error {
		_, err := e.client.StopTask(ctx, &ecs.StopTaskInput{
			Cluster: aws.String(e.cfg.Cluster),
			Task:    aws.String(task.ID),
			Reason:  aws.String(reason),
		})
		return err
	})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "InvalidParameterException" &&
			strings.Contains(strings.ToLower(ae.ErrorMessage()), "not found") {
			return nil
		}
		return fmt.Errorf("ecs stop task %s: %w", task.ID, err)
	}
	e.log.InfoContext(ctx, "stopped ecs task", "task", task.ID, "reason", reason)
	return nil
}
