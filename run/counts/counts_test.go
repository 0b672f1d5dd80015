package counts_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pallarel/pallarel/run/counts"
	"github.com/pallarel/pallarel/sidekiq/sidekiqtest"
)

// recorder is a Writer that keeps every write, and can hold writes until
// released.
type recorder struct {
	mu           sync.Mutex
	done, failed map[string]int
	writes       int
	hold         chan struct{} // non-nil: writes wait for it to close
	held         chan struct{} // closed when a write starts waiting
}

func newRecorder() *recorder { return &recorder{done: map[string]int{}, failed: map[string]int{}} }

func (r *recorder) wait() {
	r.mu.Lock()
	hold := r.hold
	if hold != nil && r.held != nil {
		close(r.held)
		r.held = nil
	}
	r.mu.Unlock()
	if hold != nil {
		<-hold
	}
}

func (r *recorder) IncrementDone(_ context.Context, token string, n int) error {
	r.wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done[token] += n
	r.writes++
	return nil
}

func (r *recorder) IncrementFailed(_ context.Context, token string, n int) error {
	r.wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed[token] += n
	r.writes++
	return nil
}

func (r *recorder) got(token string) (done, failed, writes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done[token], r.failed[token], r.writes
}

// A burst of rows is a few writes, not one a row, and what is held back
// reaches the database without another row ending.
func TestCountsCoalesceAndReachTheDatabase(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	c := counts.New(counts.Params{Writer: rec, Every: 50 * time.Millisecond})
	defer c.Close()
	ctx := context.Background()
	for range 1000 {
		c.Add(ctx, "a", 1, 0)
	}
	c.Add(ctx, "a", 0, 1)
	c.Add(ctx, "b", 1, 0)
	sidekiqtest.WaitFor(t, 5*time.Second, "the held back counts written", func() bool {
		ad, af, _ := rec.got("a")
		bd, _, _ := rec.got("b")
		return ad == 1000 && af == 1 && bd == 1
	})
	if _, _, writes := rec.got("a"); writes > 10 {
		t.Errorf("%d writes for 1,002 rows in a burst", writes)
	}
}

// Close waits for a write of held back counts under way, then writes what
// is still held back: nothing is written after it returns, nothing lost.
func TestCloseJoinsItsWrites(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	c := counts.New(counts.Params{Writer: rec, Every: 20 * time.Millisecond})
	ctx := context.Background()
	c.Add(ctx, "a", 1, 0) // written at once
	rec.mu.Lock()
	rec.hold, rec.held = make(chan struct{}), make(chan struct{})
	held := rec.held
	rec.mu.Unlock()
	c.Add(ctx, "a", 1, 0) // held back: its timer's write waits in the recorder
	<-held
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a write of its own was waiting")
	case <-time.After(100 * time.Millisecond):
	}
	rec.mu.Lock()
	close(rec.hold)
	rec.mu.Unlock()
	<-closed
	if d, _, _ := rec.got("a"); d != 2 {
		t.Errorf("run a: done %d after Close, want 2", d)
	}
	c.Add(ctx, "a", 1, 0) // after Close: written at once
	if d, _, _ := rec.got("a"); d != 3 {
		t.Errorf("run a: done %d after a late Add, want 3", d)
	}
}

// Counts held back when Close comes are written by Close itself, their
// timers stopped.
func TestCloseWritesWhatIsHeldBack(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	c := counts.New(counts.Params{Writer: rec, Every: time.Hour})
	ctx := context.Background()
	c.Add(ctx, "a", 1, 0)
	c.Add(ctx, "a", 2, 3)
	if d, f, _ := rec.got("a"); d != 1 || f != 0 {
		t.Fatalf("before Close: done %d failed %d, want only the first row written", d, f)
	}
	c.Close()
	if d, f, _ := rec.got("a"); d != 3 || f != 3 {
		t.Errorf("after Close: done %d failed %d, want 3 and 3", d, f)
	}
}
