//go:build unix

package sidekiq

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

// deadPID is the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestGoneFromHost(t *testing.T) {
	gone := goneFromHost("box")
	dead := deadPID(t)
	for id, want := range map[string]bool{
		fmt.Sprintf("box:%d:abcdefabcdef", dead):         true,  // its pid is free
		fmt.Sprintf("box:%d:abcdefabcdef", os.Getpid()):  true,  // a previous run with this process's pid
		fmt.Sprintf("box:%d:abcdefabcdef", os.Getppid()): false, // alive
		fmt.Sprintf("other:%d:abcdefabcdef", dead):       false, // another host: heartbeats decide
		"box:notapid:abc":                  false,
		"garbage":                          false,
		fmt.Sprintf("my:box:%d:abc", dead): false, // hostname "my:box"
	} {
		if got := gone(id); got != want {
			t.Errorf("gone(%q) = %v, want %v", id, got, want)
		}
	}
}

// With a private Redis, a process of this host whose pid is gone has its
// in-flight jobs given back although its heartbeat has not expired, and
// leaves the process list; a live one keeps its jobs.
func TestPrivateRedisRecoversGoneProcessAtOnce(t *testing.T) {
	db := redistest.New(t)
	dead := fmt.Sprintf("box:%d:abcdefabcdef", deadPID(t))
	live := fmt.Sprintf("box:%d:abcdefabcdef", os.Getppid())
	for _, id := range []string{dead, live} {
		db.Do(t, "SADD", "processes", id)
		db.Do(t, "HSET", id, "info", "{}", "beat", "1")
		db.Do(t, "EXPIRE", id, 60)
		db.Do(t, "SADD", "pallarel:inflight", id+"|q")
		db.Do(t, "LPUSH", "pallarel:inflight|"+id+"|q", `{"class":"X","args":[1],"jid":"`+id[len(id)-4:]+`","queue":"q"}`)
	}
	srv, _ := NewServer(db.Pool, NewRegistry(), Options{Queues: []QueueWeight{{Name: "q"}}, Hostname: "box", PrivateRedis: true, Logger: quietLogger()})
	rec := newServerParts(srv).recoverer
	if rec == nil || rec.deadHere == nil {
		t.Fatal("PrivateRedis did not give the recoverer its pid check")
	}
	n, err := rec.recoverOrphans(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("recovered %d, %v; want the gone process's 1 job", n, err)
	}
	if l, _ := redis.Int(db.Do(t, "LLEN", "queue:q"), nil); l != 1 {
		t.Fatalf("queue holds %d jobs", l)
	}
	if l, _ := redis.Int(db.Do(t, "LLEN", "pallarel:inflight|"+live+"|q"), nil); l != 1 {
		t.Fatal("the live process's job was taken")
	}
	members, _ := redis.Strings(db.Do(t, "SMEMBERS", "processes"), nil)
	if strings.Contains(strings.Join(members, " "), dead) || !strings.Contains(strings.Join(members, " "), live) {
		t.Fatalf("processes: %v", members)
	}

	// Without PrivateRedis the heartbeat decides: nothing moves.
	db.Do(t, "SADD", "pallarel:inflight", dead+"|q")
	db.Do(t, "LPUSH", "pallarel:inflight|"+dead+"|q", `{"class":"X","args":[2],"jid":"again","queue":"q"}`)
	shared, _ := NewServer(db.Pool, NewRegistry(), Options{Queues: []QueueWeight{{Name: "q"}}, Hostname: "box", Logger: quietLogger()})
	if n, err := newServerParts(shared).recoverer.recoverOrphans(context.Background()); err != nil || n != 0 {
		t.Fatalf("shared Redis recovered %d, %v; want 0 while the heartbeat lives", n, err)
	}
}
