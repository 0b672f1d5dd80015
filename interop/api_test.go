package interop

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pallarel/pallarel/sidekiq"
)

// apiRecord is a job as testdata/api.rb reports it from Ruby's API.
type apiRecord struct {
	JID            string   `json:"jid"`
	Klass          string   `json:"klass"`
	DisplayClass   string   `json:"display_class"`
	Queue          string   `json:"queue"`
	Args           []any    `json:"args"`
	ErrorMessage   string   `json:"error_message"`
	ErrorClass     string   `json:"error_class"`
	RetryCount     *int     `json:"retry_count"`
	FailedAt       float64  `json:"failed_at"`
	CreatedAt      float64  `json:"created_at"`
	EnqueuedAt     *float64 `json:"enqueued_at"`
	ErrorBacktrace []string `json:"error_backtrace"`
	At             float64  `json:"at"`
}

// apiView is everything testdata/api.rb prints.
type apiView struct {
	Now   float64 `json:"now"`
	Stats struct {
		Processed     int `json:"processed"`
		Failed        int `json:"failed"`
		ScheduledSize int `json:"scheduled_size"`
		RetrySize     int `json:"retry_size"`
		DeadSize      int `json:"dead_size"`
		ProcessesSize int `json:"processes_size"`
		WorkersSize   int `json:"workers_size"`
		Enqueued      int `json:"enqueued"`
	} `json:"stats"`
	Processes []struct {
		Identity    string   `json:"identity"`
		Hostname    string   `json:"hostname"`
		PID         int      `json:"pid"`
		Tag         string   `json:"tag"`
		Concurrency int      `json:"concurrency"`
		Queues      []string `json:"queues"`
		Busy        int      `json:"busy"`
		Beat        float64  `json:"beat"`
		Quiet       string   `json:"quiet"`
		StartedAt   float64  `json:"started_at"`
	} `json:"processes"`
	Workers []struct {
		Process string  `json:"process"`
		Thread  string  `json:"thread"`
		Queue   string  `json:"queue"`
		RunAt   float64 `json:"run_at"`
		JID     string  `json:"jid"`
		Klass   string  `json:"klass"`
		Args    []any   `json:"args"`
	} `json:"workers"`
	Retries   []apiRecord `json:"retries"`
	Dead      []apiRecord `json:"dead"`
	Scheduled []apiRecord `json:"scheduled"`
	Queues    []string    `json:"queues"`
	Latency   map[string]struct {
		Latency float64  `json:"latency"`
		Size    int      `json:"size"`
		JIDs    []string `json:"jids"`
	} `json:"latency"`
}

func byJID(rs []apiRecord) map[string]apiRecord {
	out := map[string]apiRecord{}
	for _, r := range rs {
		out[r.JID] = r
	}
	return out
}

// TestRubyAPIReadsGoData: Ruby's Sidekiq::Stats, ProcessSet, Workers,
// RetrySet, DeadSet, ScheduledSet and Queue#latency read correct values
// from what a Go server wrote.
//
// Ruby 6.4.1 and 7.3.2 read timestamps as float seconds and would take
// Dialect8's integer milliseconds for seconds (dates tens of thousands of
// years ahead), so the Go server runs in the dialect of each Ruby version:
// Dialect6 for 6.4.1, Dialect7 for 7.3.2, Dialect8 for 8.0.6. The Dialect8
// queue "waiting8" documents that limitation through Queue#latency (and
// that 8.0.6 reads it right).
func TestRubyAPIReadsGoData(t *testing.T) {
	for _, tc := range []struct {
		version string
		dialect sidekiq.Dialect
	}{{"6", sidekiq.Dialect6}, {"7", sidekiq.Dialect7}, {"8", sidekiq.Dialect8}} {
		t.Run("sidekiq"+tc.version, func(t *testing.T) {
			t.Parallel()
			f := newGoFixture(t, tc.dialect, 1)
			var v apiView
			rubyResult(t, tc.version, "testdata/api.rb", &v, "REDIS_URL="+f.db.URL(), "LATENCY_QUEUES=waiting,waiting8")
			checkAPIView(t, f, v, true)

			workersKey := f.srv.Identity() + ":workers"
			if tc.dialect == sidekiq.Dialect6 {
				// 6.4.1 reads running jobs from <identity>:workers, which
				// Go writes only in Dialect6 (the key was renamed
				// <identity>:work in 6.4.2).
				if redisInt(t, f.db, "EXISTS", workersKey) != 1 {
					t.Errorf("Dialect6 server did not write %s", workersKey)
				}
				return
			}
			if redisInt(t, f.db, "EXISTS", workersKey) != 0 {
				t.Errorf("Dialect%d server wrote the 6.4.1-only key %s", tc.dialect, workersKey)
			}
			if tc.dialect != sidekiq.Dialect7 {
				return
			}
			// The same Dialect7 data read by 6.4.1: the running job is
			// counted (the heartbeat's busy) but not listed, since 6.4.1
			// looks for <identity>:workers. A documented limitation: run
			// Go with --dialect 6 while 6.4.1 Web UIs watch it.
			var v6 apiView
			rubyResult(t, "6", "testdata/api.rb", &v6, "REDIS_URL="+f.db.URL(), "LATENCY_QUEUES=waiting,waiting8")
			if v6.Stats.WorkersSize != 1 || len(v6.Workers) != 0 {
				t.Errorf("6.4.1 on Dialect7 data: workers_size %d, listed %d; want 1 counted, 0 listed",
					v6.Stats.WorkersSize, len(v6.Workers))
			}
			checkAPIView(t, f, v6, false)
		})
	}
}

// checkAPIView asserts what Ruby's API read; withWorkers also checks the
// running job's listing.
func checkAPIView(t *testing.T, f *goFixture, v apiView, withWorkers bool) {
	t.Helper()
	now := time.Unix(0, int64(v.Now*1e9))
	s := v.Stats
	if s.Processed != f.processed || s.Failed != f.failed || s.ScheduledSize != 1 || s.RetrySize != 2 ||
		s.DeadSize != 2 || s.ProcessesSize != 1 || s.WorkersSize != 1 || s.Enqueued != 2 {
		t.Errorf("Sidekiq::Stats %+v; want processed %d failed %d scheduled 1 retry 2 dead 2 processes 1 workers 1 enqueued 2",
			s, f.processed, f.failed)
	}

	if len(v.Processes) != 1 {
		t.Fatalf("ProcessSet has %d processes", len(v.Processes))
	}
	p := v.Processes[0]
	host, _ := os.Hostname()
	if p.Identity != f.srv.Identity() || p.Hostname != host || p.PID != os.Getpid() || p.Busy != 1 ||
		p.Quiet != "false" || p.Concurrency != 2 || !reflect.DeepEqual(p.Queues, []string{workQueue}) || p.Tag != "interop" {
		t.Errorf("ProcessSet entry %+v; want identity %s host %s pid %d busy 1 quiet false concurrency 2 queues [work] tag interop",
			p, f.srv.Identity(), host, os.Getpid())
	}
	if !within(p.Beat, now) || !within(p.StartedAt, now) {
		t.Errorf("process beat %v started_at %v: want within a minute of %v", p.Beat, p.StartedAt, v.Now)
	}

	if withWorkers {
		if len(v.Workers) != 1 {
			t.Fatalf("Sidekiq::Workers lists %d jobs, want the running Go job", len(v.Workers))
		}
		w := v.Workers[0]
		if w.Process != f.srv.Identity() || w.JID != f.blockJID || w.Klass != "Interop::BlockJob" || w.Queue != workQueue ||
			w.Thread == "" || !reflect.DeepEqual(w.Args, []any{"block"}) || !within(w.RunAt, now) {
			t.Errorf("Sidekiq::Workers entry %+v; want process %s jid %s Interop::BlockJob on work", w, f.srv.Identity(), f.blockJID)
		}
	}

	retries := byJID(v.Retries)
	r, ok := retries[f.failJIDs[0]]
	if !ok {
		t.Fatalf("RetrySet lacks %s: %+v", f.failJIDs[0], v.Retries)
	}
	if r.Klass != "Interop::FailJob" || r.DisplayClass != "Interop::FailJob" || r.Queue != parkedQueue ||
		r.ErrorMessage != "boom from go 0" || r.ErrorClass != "Pallarel::JobError" ||
		r.RetryCount == nil || *r.RetryCount != 0 || !within(r.FailedAt, now) || !within(r.CreatedAt, now) ||
		!reflect.DeepEqual(r.Args, []any{float64(0)}) {
		t.Errorf("RetrySet entry %+v", r)
	}
	// backtrace: true keeps every line: the handler's location first, as
	// Ruby lists the raising method first, then its callers.
	if len(r.ErrorBacktrace) < 3 || !strings.Contains(r.ErrorBacktrace[0], "fixture_test.go:") ||
		!strings.Contains(r.ErrorBacktrace[0], ":in `") {
		t.Errorf("RetrySet entry backtrace %q", r.ErrorBacktrace)
	}
	// Measured from the failure, not from when Ruby ran (a loaded machine
	// may start Ruby many seconds later): count⁴ + 15 plus jitter 0..9.
	if d := r.At - r.FailedAt; d < 14.99 || d > 25.01 {
		t.Errorf("retry at %v is %.2fs after failed_at %v, want Sidekiq's 15..25s backoff", r.At, d, r.FailedAt)
	}
	pr := retries[f.panicJID]
	if pr.ErrorClass != "Pallarel::Panic" || !strings.Contains(pr.ErrorMessage, "go panic for the backtrace") ||
		len(pr.ErrorBacktrace) < 3 || len(pr.ErrorBacktrace) > 20 || !strings.Contains(pr.ErrorBacktrace[0], "fixture_test.go:") {
		t.Errorf("panic RetrySet entry: class %q message %q backtrace %q", pr.ErrorClass, pr.ErrorMessage, pr.ErrorBacktrace)
	}

	dead := byJID(v.Dead)
	d, ok := dead[f.deadJID]
	if !ok {
		t.Fatalf("DeadSet lacks %s: %+v", f.deadJID, v.Dead)
	}
	if d.Klass != "Interop::DeadJob" || d.Queue != parkedQueue || d.ErrorMessage != "dead from go" ||
		d.RetryCount == nil || *d.RetryCount != 0 || !within(d.FailedAt, now) || !within(d.At, now) {
		t.Errorf("DeadSet entry %+v", d)
	}
	if _, ok := dead[""]; !ok {
		t.Errorf("DeadSet lacks the bad payload (TV10): %+v", v.Dead)
	}

	if len(v.Scheduled) != 1 || v.Scheduled[0].JID != f.schedJID || v.Scheduled[0].Klass != "Interop::OkJob" ||
		v.Scheduled[0].EnqueuedAt != nil {
		t.Fatalf("ScheduledSet %+v, want %s without enqueued_at", v.Scheduled, f.schedJID)
	}
	if d := v.Scheduled[0].At - v.Now; d < 3540 || d > 3660 {
		t.Errorf("scheduled at %.0fs from now, want an hour", d)
	}

	for _, q := range []string{"waiting", "waiting8", workQueue, parkedQueue} {
		if !contains(v.Queues, q) && q != parkedQueue {
			t.Errorf("Sidekiq::Queue.all %v lacks %s", v.Queues, q)
		}
	}
	if v.Latency == nil {
		return
	}
	w := v.Latency["waiting"]
	if w.Size != 1 || !reflect.DeepEqual(w.JIDs, []string{f.waitJID}) || w.Latency < 9 || w.Latency > 70 {
		t.Errorf("Queue(waiting) size %d jids %v latency %v; want 1 %s about 10s", w.Size, w.JIDs, w.Latency, f.waitJID)
	}
	w8 := v.Latency["waiting8"]
	if f.dialect == sidekiq.Dialect8 {
		if w8.Size != 1 || w8.Latency < 9 || w8.Latency > 70 {
			t.Errorf("8.0.6: Queue(waiting8) size %d latency %v; want 1 about 10s", w8.Size, w8.Latency)
		}
		return
	}
	// Documented limitation: 6.4.1 and 7.3.2 take Dialect8's integer
	// milliseconds for seconds, so the latency is hugely negative.
	if w8.Size != 1 || w8.Latency > -1e11 {
		t.Errorf("Queue(waiting8) size %d latency %v; want 1 and a latency below -1e11 (ms read as s)", w8.Size, w8.Latency)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
