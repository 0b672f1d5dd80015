//go:build unix

package sidekiq

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

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
	// A server running in this process has this process's pid and is alive.
	here := &localServers{}
	sibling := fmt.Sprintf("box:%d:abcdefabcdef", os.Getpid())
	here.add(sibling, true)
	if goneFromHostOf("box", here)(sibling) {
		t.Errorf("a server running in this process was taken for gone")
	}
	here.remove(sibling)
	if !goneFromHostOf("box", here)(sibling) {
		t.Errorf("a stopped server of this process's pid was taken for alive")
	}
}

// The all-in-one mode's servers share one pid: with a private Redis, one
// server's recoverer leaves a sibling's running job and its place in
// processes alone, and only the first server reports the process's RSS.
func TestServersOfOneProcessDoNotRecoverEachOther(t *testing.T) {
	db := redistest.New(t)
	reg := NewRegistry()
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	reg.Register(func(ctx context.Context, j *Job) error {
		started <- struct{}{}
		<-release
		return nil
	}, "Held")
	a := startServer(t, db, reg, Options{Queues: []QueueWeight{{Name: "a"}}, Hostname: "box", PrivateRedis: true})
	b := startServer(t, db, NewRegistry(), Options{Queues: []QueueWeight{{Name: "b"}}, Hostname: "box", PrivateRedis: true})
	t.Cleanup(func() { close(release) }) // before the servers stop
	j, _ := NewJob("Held", 1)
	j.Queue = "a"
	if _, err := a.Client().Push(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	<-started
	rec := newServerParts(b).recoverer
	for range 3 {
		if n, err := rec.recoverOrphans(context.Background()); err != nil || n != 0 {
			t.Fatalf("b's recoverer moved %d jobs (%v) of its running sibling", n, err)
		}
	}
	if l, _ := redis.Int(db.Do(t, "LLEN", "pallarel:inflight|"+a.Identity()+"|a"), nil); l != 1 {
		t.Fatalf("a's in-flight list holds %d jobs, want its running one", l)
	}
	if l, _ := redis.Int(db.Do(t, "LLEN", "queue:a"), nil); l != 0 {
		t.Fatalf("a's running job was pushed back: queue holds %d", l)
	}
	for _, id := range []string{a.Identity(), b.Identity()} {
		if n, _ := redis.Int(db.Do(t, "SISMEMBER", "processes", id), nil); n != 1 {
			t.Fatalf("%s left processes while it runs", id)
		}
	}
	waitFor(t, 5*time.Second, "both beat", func() bool {
		ra, _ := redis.String(db.Do(t, "HGET", a.Identity(), "rss"), nil)
		rb, _ := redis.String(db.Do(t, "HGET", b.Identity(), "rss"), nil)
		return ra != "" && rb != ""
	})
	rb, _ := redis.Int64(db.Do(t, "HGET", b.Identity(), "rss"), nil)
	ra, _ := redis.Int64(db.Do(t, "HGET", a.Identity(), "rss"), nil)
	if rb != 0 {
		t.Errorf("the second server of the process reports rss %d KB: the Web UI counts the process twice", rb)
	}
	if runningHere.reportsMemory(a.Identity()) && ra <= 0 {
		t.Errorf("the process's first server reports rss %d", ra)
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

// With a private Redis, a gone capsule (of a previous run of this server,
// or of a killed one) gives back its jobs at once and takes its gone
// process entry off the list; a capsule that stopped from a live entry
// leaves that entry alone.
func TestPrivateRedisRecoversGoneCapsuleAtOnce(t *testing.T) {
	db := redistest.New(t)
	deadProc := fmt.Sprintf("box:%d:aaaaaaaaaaaa", deadPID(t))
	deadCap := fmt.Sprintf("box:%d:bbbbbbbbbbbb", deadPID(t))
	liveProc := fmt.Sprintf("box:%d:cccccccccccc", os.Getpid())
	leftCap := fmt.Sprintf("box:%d:dddddddddddd", os.Getpid()) // stopped; its release failed
	runningHere.add(liveProc, true)
	t.Cleanup(func() { runningHere.remove(liveProc) })
	for _, pc := range [][2]string{{deadProc, deadCap}, {liveProc, leftCap}} {
		db.Do(t, "SADD", "processes", pc[0])
		db.Do(t, "HSET", pc[0], "info", "{}", "beat", "1")
		db.Do(t, "EXPIRE", pc[0], 60)
		db.Do(t, "HSET", "pallarel:capsule|"+pc[1], "process", pc[0])
		db.Do(t, "EXPIRE", "pallarel:capsule|"+pc[1], 60)
		db.Do(t, "SADD", "pallarel:inflight", pc[1]+"|q")
		db.Do(t, "LPUSH", "pallarel:inflight|"+pc[1]+"|q", `{"class":"X","args":[1],"jid":"`+pc[1][len(pc[1])-4:]+`","queue":"q"}`)
	}
	srv, _ := NewServer(db.Pool, NewRegistry(), Options{Queues: []QueueWeight{{Name: "q"}}, Hostname: "box", PrivateRedis: true, Logger: quietLogger()})
	n, err := newServerParts(srv).recoverer.recoverOrphans(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("recovered %d, %v; want both gone capsules' jobs", n, err)
	}
	members, _ := redis.Strings(db.Do(t, "SMEMBERS", "processes"), nil)
	if !slices.Equal(members, []string{liveProc}) {
		t.Fatalf("processes %q, want only the live entry %s", members, liveProc)
	}
	for _, id := range []string{deadCap, leftCap} {
		if n, _ := redis.Int(db.Do(t, "EXISTS", "pallarel:capsule|"+id, id), nil); n != 0 {
			t.Errorf("gone capsule %s still has a key", id)
		}
	}
}
