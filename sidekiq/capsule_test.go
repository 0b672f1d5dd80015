package sidekiq

import (
	"cmp"
	"context"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redistest"
)

// capsuleBundle is a SharedProcess and the capsules started in it.
type capsuleBundle struct {
	db      *redistest.DB
	proc    *SharedProcess
	reg     *Registry
	started chan string // the queue of each Held job as it starts
	release chan struct{}
	timeout time.Duration // of the capsules run starts; default 5s
}

func setupCapsules(t *testing.T) *capsuleBundle {
	t.Helper()
	b := &capsuleBundle{db: redistest.New(t), reg: NewRegistry(), started: make(chan string, 10), release: make(chan struct{})}
	b.reg.Register(func(ctx context.Context, j *Job) error {
		b.started <- j.Queue
		select {
		case <-b.release:
		case <-ctx.Done():
		}
		return ctx.Err()
	}, "Held")
	var err error
	b.proc, err = NewSharedProcess(b.db.Pool, SharedProcessOptions{Hostname: "box", Tag: "app", Logger: quietLogger(),
		HeartbeatInterval: 100 * time.Millisecond, ProcessTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// run starts a capsule; the returned channel gets Run's error.
func (b *capsuleBundle) run(t *testing.T, name string, concurrency int, queues ...QueueWeight) (*Server, <-chan error) {
	t.Helper()
	srv, err := NewServer(b.db.Pool, b.reg, Options{Process: b.proc, Capsule: name, Queues: queues, Concurrency: concurrency,
		Prefetch: -1, // a job given back stays in its queue for the test to see
		Logger:   quietLogger(), Timeout: cmp.Or(b.timeout, 5*time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	finished := make(chan struct{}) // the test may have read done
	go func() { done <- srv.Run(context.Background()); close(finished) }()
	t.Cleanup(func() {
		srv.Stop()
		select {
		case <-finished:
		case <-time.After(15 * time.Second):
			t.Errorf("capsule %s did not stop", name)
		}
	})
	waitFor(t, 5*time.Second, name+" joined", func() bool { return srv.entry.Load() != nil })
	return srv, done
}

func (b *capsuleBundle) push(t *testing.T, queue string) {
	t.Helper()
	j, _ := NewJob("Held")
	j.Queue = queue
	if _, err := NewClient(b.db.Pool, ClientOptions{}).Push(context.Background(), j); err != nil {
		t.Fatal(err)
	}
}

func (b *capsuleBundle) info(t *testing.T, id string) map[string]any {
	t.Helper()
	raw, _ := redis.String(b.db.Do(t, "HGET", id, "info"), nil)
	var info map[string]any
	if err := json.Unmarshal([]byte(raw), &info); err != nil {
		t.Fatalf("info %q: %v", raw, err)
	}
	return info
}

func (b *capsuleBundle) members(t *testing.T) []string {
	t.Helper()
	m, _ := redis.Strings(b.db.Do(t, "SMEMBERS", "processes"), nil)
	return m
}

// Servers of one OS process joined to a SharedProcess are one Sidekiq
// process, written as Sidekiq 8.0.6 writes a process with capsules
// (testdata/ruby8_capsules_info.json, same configuration): one entry,
// queues of every capsule, one weights hash per capsule, concurrency the
// sum, one work hash with every capsule's running jobs.
func TestSharedProcessIsOneEntryAsRubyCapsules(t *testing.T) {
	b := setupCapsules(t)
	def, _ := b.run(t, "default", 3, QueueWeight{Name: "critical"}, QueueWeight{Name: "default"})
	single, _ := b.run(t, "single", 1, QueueWeight{Name: "single_threaded"})
	wt, _ := b.run(t, "wt", 2, QueueWeight{Name: "a", Weight: 3}, QueueWeight{Name: "b", Weight: 1})
	t.Cleanup(func() { close(b.release) }) // before the capsules stop
	id := b.proc.Identity()
	for _, s := range []*Server{def, single, wt} {
		if s.Identity() != id {
			t.Fatalf("capsule identity %s, process %s", s.Identity(), id)
		}
	}
	if m := b.members(t); !slices.Equal(m, []string{id}) {
		t.Fatalf("processes %q, want the one entry %s", m, id)
	}
	b.push(t, "critical")
	b.push(t, "a")
	<-b.started
	<-b.started
	waitFor(t, 5*time.Second, "both jobs in the one work hash", func() bool {
		n, _ := redis.Int(b.db.Do(t, "HLEN", id+":work"), nil)
		return n == 2
	})
	work, _ := redis.StringMap(b.db.Do(t, "HGETALL", id+":work"), nil)
	var queues []string
	for _, v := range work {
		var w workEntry
		if err := json.Unmarshal([]byte(v), &w); err != nil {
			t.Fatal(err)
		}
		queues = append(queues, w.Queue)
	}
	slices.Sort(queues)
	if !slices.Equal(queues, []string{"a", "critical"}) {
		t.Fatalf("work hash %v", work)
	}

	raw, err := os.ReadFile("testdata/ruby8_capsules_info.json")
	if err != nil {
		t.Fatal(err)
	}
	var ruby map[string]any
	if err := json.Unmarshal(raw, &ruby); err != nil {
		t.Fatal(err)
	}
	ours := b.info(t, id)
	for k, rv := range ruby {
		gv, ok := ours[k]
		if !ok {
			t.Errorf("info lacks %q, which Ruby writes", k)
			continue
		}
		if reflect.TypeOf(gv) != reflect.TypeOf(rv) {
			t.Errorf("info %q is %T, Ruby's %T", k, gv, rv)
		}
		switch k {
		case "concurrency", "queues", "weights":
			if !reflect.DeepEqual(gv, rv) {
				t.Errorf("info %q = %v, Ruby's %v", k, gv, rv)
			}
		}
	}
	if ours["identity"] != id || ours["hostname"] != "box" || ours["pid"] != float64(os.Getpid()) || ours["tag"] != "app" {
		t.Errorf("info %v", ours)
	}
	// Sidekiq 8.0.9+'s capsules, named as configured.
	caps, _ := ours["capsules"].(map[string]any)
	wantCaps := map[string]any{
		"default": map[string]any{"concurrency": 3.0, "mode": "strict", "weights": map[string]any{"critical": 0.0, "default": 0.0}},
		"single":  map[string]any{"concurrency": 1.0, "mode": "strict", "weights": map[string]any{"single_threaded": 0.0}},
		"wt":      map[string]any{"concurrency": 2.0, "mode": "weighted", "weights": map[string]any{"a": 3.0, "b": 1.0}},
	}
	if !reflect.DeepEqual(caps, wantCaps) {
		t.Errorf("capsules %v", caps)
	}
	h, _ := redis.StringMap(b.db.Do(t, "HGETALL", id), nil)
	if h["concurrency"] != "6" || h["busy"] != "2" || h["quiet"] != "false" {
		t.Errorf("process hash %v", h)
	}
	if rss, _ := strconv.ParseInt(h["rss"], 10, 64); runningHere.reportsMemory(id) && rss <= 0 {
		t.Errorf("rss %q", h["rss"])
	}
}

// Capsules come and go while the process runs: the heartbeat writes the
// current set, a capsule that stops gives back and unregisters only its
// own jobs, and the Web UI's Quiet and Stop reach every capsule.
func TestSharedProcessCapsulesComeAndGoAndSignalsReachAll(t *testing.T) {
	b := setupCapsules(t)
	report, reportDone := b.run(t, "report", 2, QueueWeight{Name: "report"})
	id := b.proc.Identity()
	// Two token capsules on one queue: each owns its in-flight list.
	b.timeout = 10 * time.Millisecond // tok1's job is given back at once when it stops
	tok1, tok1Done := b.run(t, "token", 1, QueueWeight{Name: "tok"})
	b.timeout = 0
	tok2, tok2Done := b.run(t, "token", 1, QueueWeight{Name: "tok"})
	if tok1.identity == tok2.identity || tok1.identity == id {
		t.Fatal("capsules share an in-flight owner")
	}
	if got := b.info(t, id)["queues"]; !reflect.DeepEqual(got, []any{"report", "tok"}) {
		t.Fatalf("queues %v", got)
	}
	b.push(t, "tok")
	b.push(t, "tok")
	b.push(t, "report")
	for range 3 {
		<-b.started
	}
	inflight := func(s *Server) int {
		n, _ := redis.Int(b.db.Do(t, "LLEN", "pallarel:inflight|"+s.identity+"|tok"), nil)
		return n
	}
	if inflight(tok1) != 1 || inflight(tok2) != 1 {
		t.Fatalf("in-flight %d and %d, want one job each", inflight(tok1), inflight(tok2))
	}
	// Another process's recoverer leaves the capsules' jobs alone: their
	// process beats for them.
	other, _ := NewServer(b.db.Pool, NewRegistry(), Options{Queues: []QueueWeight{{Name: "x"}}, Hostname: "elsewhere", Logger: quietLogger()})
	if n, err := newServerParts(other).recoverer.recoverOrphans(context.Background()); err != nil || n != 0 {
		t.Fatalf("another process recovered %d jobs (%v) of live capsules", n, err)
	}

	// One token capsule ends (its run is over): its job still running at
	// its shutdown deadline goes back to the queue; tok2's stays its own.
	tok1.Stop()
	if err := <-tok1Done; err != nil {
		t.Fatal(err)
	}
	if inflight(tok1) != 0 || inflight(tok2) != 1 {
		t.Fatalf("after tok1 left: in-flight %d and %d, want 0 and tok2's 1", inflight(tok1), inflight(tok2))
	}
	if n, _ := redis.Int(b.db.Do(t, "LLEN", "queue:tok"), nil); n != 1 {
		t.Fatalf("queue:tok holds %d, want tok1's job given back", n)
	}
	if n, _ := redis.Int(b.db.Do(t, "EXISTS", "pallarel:capsule|"+tok1.identity), nil); n != 0 {
		t.Fatal("the stopped capsule is still kept alive")
	}
	if m := b.members(t); !slices.Equal(m, []string{id}) {
		t.Fatalf("processes %q after one capsule left, want %s", m, id)
	}
	if got := b.info(t, id)["capsules"].(map[string]any); len(got) != 2 || got["report"] == nil || got["token"] == nil {
		t.Fatalf("capsules after tok1 left: %v", got)
	}
	if c, _ := redis.Int(b.db.Do(t, "HGET", id, "concurrency"), nil); c != 3 {
		t.Fatalf("concurrency %d after tok1 left, want 3", c)
	}

	// Quiet from the Web UI: every capsule, and one that joins later.
	b.db.Do(t, "LPUSH", id+"-signals", "TSTP")
	waitFor(t, 5*time.Second, "quiet", func() bool {
		q, _ := redis.String(b.db.Do(t, "HGET", id, "quiet"), nil)
		return q == "true" && report.quiet.Load() && tok2.quiet.Load()
	})
	late, lateDone := b.run(t, "late", 1, QueueWeight{Name: "late"})
	if !late.quiet.Load() || late.Identity() != id {
		t.Fatal("a capsule joining a quiet process fetches")
	}
	// Stop from the Web UI: every capsule stops, the entry goes.
	close(b.release)
	b.db.Do(t, "LPUSH", id+"-signals", "TERM")
	for name, done := range map[string]<-chan error{"report": reportDone, "tok2": tok2Done, "late": lateDone} {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not stop on the Web UI's Stop", name)
		}
	}
	if m := b.members(t); len(m) != 0 {
		t.Fatalf("processes %q after Stop", m)
	}
	if n, _ := redis.Int(b.db.Do(t, "EXISTS", id+":work"), nil); n != 0 {
		t.Fatal("work hash left after Stop")
	}
	// The next capsule is a new process.
	b.release = make(chan struct{})
	next, _ := b.run(t, "next", 1, QueueWeight{Name: "next"})
	if next.Identity() == id || next.quiet.Load() {
		t.Fatalf("a capsule started after Stop joined the stopped entry %s (quiet %v)", next.Identity(), next.quiet.Load())
	}
}
