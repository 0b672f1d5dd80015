package sidekiq

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

// PushListed pushes nothing to a queue missing from "queues" (as after the
// dashboard's "Delete queue"), and once the queue is listed pushes as
// PushBulk does: the same list order, across more than one batch.
func TestPushListed(t *testing.T) {
	ctx := context.Background()
	db := redistest.New(t)
	c := NewClient(db.Pool, ClientOptions{BatchSize: 700})
	jobsFor := func(queue string) []*Job {
		var jobs []*Job
		for i := range 1500 {
			j, err := NewJob("Echo", i)
			if err != nil {
				t.Fatal(err)
			}
			j.Queue = queue
			jobs = append(jobs, j)
		}
		return jobs
	}
	conn := db.Pool.Get()
	defer conn.Close()
	llen := func(queue string) int {
		n, err := redis.Int(conn.Do("LLEN", "queue:"+queue))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	if jids, err := c.PushListed(ctx, "listed", jobsFor("listed")); !errors.Is(err, ErrQueueUnlisted) || len(jids) != 0 {
		t.Fatalf("push to an unlisted queue: %d jids, %v; want none and ErrQueueUnlisted", len(jids), err)
	}
	if n := llen("listed"); n != 0 {
		t.Fatalf("%d jobs pushed to an unlisted queue", n)
	}
	if _, err := conn.Do("SADD", "queues", "listed"); err != nil {
		t.Fatal(err)
	}
	jids, err := c.PushListed(ctx, "listed", jobsFor("listed"))
	if err != nil || len(jids) != 1500 {
		t.Fatalf("push to a listed queue: %d jids, %v", len(jids), err)
	}
	if _, err := c.PushBulk(ctx, jobsFor("plain")); err != nil {
		t.Fatal(err)
	}
	order := func(queue string) []int {
		raw, err := redis.ByteSlices(conn.Do("LRANGE", "queue:"+queue, 0, -1))
		if err != nil {
			t.Fatal(err)
		}
		var args []int
		for _, b := range raw {
			j, err := ParseJob(b)
			if err != nil {
				t.Fatal(err)
			}
			var n int
			if err := j.ScanArgs(&n); err != nil {
				t.Fatal(err)
			}
			args = append(args, n)
		}
		return args
	}
	if got, want := order("listed"), order("plain"); !slices.Equal(got, want) {
		t.Fatalf("PushListed's order differs from PushBulk's: %v… against %v…", got[:5], want[:5])
	}

	other, _ := NewJob("Echo", 1)
	other.Queue = "plain"
	if _, err := c.PushListed(ctx, "listed", []*Job{other}); err == nil {
		t.Fatal("PushListed took a job for another queue")
	}
}
