package ecstest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"
)

func runInput(token string) *ecs.RunTaskInput {
	return &ecs.RunTaskInput{
		Cluster:        aws.String("c"),
		TaskDefinition: aws.String("pallarel-token-worker:1"),
		LaunchType:     types.LaunchTypeFargate,
		StartedBy:      aws.String("tok"),
		ClientToken:    aws.String(token),
		NetworkConfiguration: &types.NetworkConfiguration{AwsvpcConfiguration: &types.AwsVpcConfiguration{
			Subnets: []string{"subnet-a"},
		}},
	}
}

func wantInvalid(t *testing.T, err error, substr string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidParameterException" || !strings.Contains(ae.ErrorMessage(), substr) {
		t.Fatalf("err = %v, want InvalidParameterException %q", err, substr)
	}
}

// The fake refuses what the ECS API reference says ECS refuses, through
// the real SDK client.
func TestRules(t *testing.T) {
	t.Parallel()
	s := New(t)
	c := s.Client(1)
	ctx := context.Background()

	_, err := c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String("c"), StartedBy: aws.String("tok"), DesiredStatus: types.DesiredStatusRunning})
	wantInvalid(t, err, "cannot specify startedBy with other arguments")

	in := runInput("t1")
	in.CapacityProviderStrategy = []types.CapacityProviderStrategyItem{{CapacityProvider: aws.String("FARGATE_SPOT"), Weight: 1}}
	_, err = c.RunTask(ctx, in)
	wantInvalid(t, err, "launch type and capacity provider strategy")

	in = runInput("t1")
	in.PropagateTags = types.PropagateTagsService
	_, err = c.RunTask(ctx, in)
	wantInvalid(t, err, "propagateTags")

	in = runInput(strings.Repeat("x", 65))
	_, err = c.RunTask(ctx, in)
	wantInvalid(t, err, "clientToken")

	in = runInput("t1")
	in.StartedBy = aws.String("has:colon")
	_, err = c.RunTask(ctx, in)
	wantInvalid(t, err, "startedBy")

	in = runInput("t1")
	in.NetworkConfiguration = nil
	_, err = c.RunTask(ctx, in)
	wantInvalid(t, err, "Network Configuration")

	in = runInput("t1")
	in.Overrides = &types.TaskOverride{ContainerOverrides: []types.ContainerOverride{{Name: aws.String("other")}}}
	_, err = c.RunTask(ctx, in)
	wantInvalid(t, err, "not a container in the TaskDefinition")

	in = runInput("t1")
	in.Tags = []types.Tag{{Key: aws.String("Token"), Value: aws.String("a")}, {Key: aws.String("Token"), Value: aws.String("b")}}
	_, err = c.RunTask(ctx, in)
	wantInvalid(t, err, `Tag keys must be unique: "Token"`)

	// The task definition's tags count once propagated: its App=pallarel
	// and the request's App=report repeat the key.
	in = runInput("t1")
	in.Tags = []types.Tag{{Key: aws.String("App"), Value: aws.String("report")}}
	in.PropagateTags = types.PropagateTagsTaskDefinition
	_, err = c.RunTask(ctx, in)
	wantInvalid(t, err, `"App" is repeated (already in the task definition's propagated tags)`)

	if len(s.Tasks()) != 0 {
		t.Fatalf("refused requests started tasks: %+v", s.Tasks())
	}
	// Without propagation the same tags are the task's own: accepted.
	in.PropagateTags = types.PropagateTagsNone
	if _, err := c.RunTask(ctx, in); err != nil {
		t.Fatalf("App without propagation: %v", err)
	}
}

// A repeated clientToken answers the first task, even once it stopped; the
// same token with another request is refused.
func TestClientTokenReplay(t *testing.T) {
	t.Parallel()
	s := New(t)
	c := s.Client(1)
	ctx := context.Background()
	first, err := c.RunTask(ctx, runInput("same"))
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(first.Tasks[0].TaskArn)
	s.Kill(arn, "EssentialContainerExited", "Essential container in task exited", 1, "")
	again, err := c.RunTask(ctx, runInput("same"))
	if err != nil || aws.ToString(again.Tasks[0].TaskArn) != arn || aws.ToString(again.Tasks[0].LastStatus) != "STOPPED" {
		t.Fatalf("replay = %+v, %v", again, err)
	}
	other := runInput("same")
	other.StartedBy = aws.String("else")
	_, err = c.RunTask(ctx, other)
	wantInvalid(t, err, "different request")
	if n := len(s.Tasks()); n != 1 {
		t.Fatalf("%d tasks, want 1", n)
	}
	// ListTasks lists desired-RUNNING tasks by default: not the dead one.
	list, err := c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String("c"), StartedBy: aws.String("tok")})
	if err != nil || len(list.TaskArns) != 0 {
		t.Fatalf("list = %v, %v", list.TaskArns, err)
	}
	// DescribeTasks: MISSING for the first describe (DescribeLag 1), then known.
	d, _ := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String("c"), Tasks: []string{arn}})
	if len(d.Failures) != 1 || aws.ToString(d.Failures[0].Reason) != "MISSING" {
		t.Fatalf("first describe = %+v", d)
	}
	d, _ = c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String("c"), Tasks: []string{arn}})
	if len(d.Tasks) != 1 || *d.Tasks[0].Containers[0].ExitCode != 1 || d.Tasks[0].StopCode != "EssentialContainerExited" {
		t.Fatalf("second describe = %+v", d)
	}
}
