package sidekiqtest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/sidekiq/sidekiqtest"
)

// fakeT records a helper's failure instead of ending the test.
type fakeT struct{ failed string }

func (*fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	if f.failed == "" {
		f.failed = fmt.Sprintf(format, args...)
	}
}

func TestWaitFor(t *testing.T) {
	var n atomic.Int32
	sidekiqtest.WaitFor(t, 5*time.Second, "three checks", func() bool { return n.Add(1) >= 3 })
	var ft fakeT
	sidekiqtest.WaitFor(&ft, 50*time.Millisecond, "never", func() bool { return false })
	if !strings.Contains(ft.failed, "waiting for never") {
		t.Fatalf("WaitFor on a false condition: %q", ft.failed)
	}
}

func TestRequireEnqueuedAndWorkOne(t *testing.T) {
	ctx := context.Background()
	db := redistest.New(t)
	client := sidekiq.NewClient(db.Pool, sidekiq.ClientOptions{})
	api := sidekiq.NewAPI(db.Pool, sidekiq.Dialect8)
	j, err := sidekiq.NewJob("HardJob", "bob", 5)
	if err != nil {
		t.Fatal(err)
	}
	j.Queue = "critical"
	if _, err := client.Push(ctx, j); err != nil {
		t.Fatal(err)
	}
	got := sidekiqtest.RequireEnqueued(ctx, t, api, "critical", "HardJob")
	if got.JID != j.JID {
		t.Fatalf("RequireEnqueued found %s, want %s", got.JID, j.JID)
	}
	var ft fakeT
	if sidekiqtest.RequireEnqueued(ctx, &ft, api, "critical", "OtherJob"); !strings.Contains(ft.failed, "no OtherJob enqueued on critical") {
		t.Fatalf("RequireEnqueued of a missing class: %q", ft.failed)
	}

	reg := sidekiq.NewRegistry()
	var name string
	var times int
	boom := errors.New("boom")
	if err := reg.Register(func(ctx context.Context, job *sidekiq.Job) error {
		if err := job.ScanArgs(&name, &times); err != nil {
			return err
		}
		return boom
	}, "HardJob"); err != nil {
		t.Fatal(err)
	}
	if err := sidekiqtest.WorkOne(ctx, t, reg, got); !errors.Is(err, boom) || name != "bob" || times != 5 {
		t.Fatalf("WorkOne = %v, args %q %d", err, name, times)
	}
	ft = fakeT{}
	other, _ := sidekiq.NewJob("OtherJob")
	if sidekiqtest.WorkOne(ctx, &ft, reg, other); !strings.Contains(ft.failed, "no handler registered for OtherJob") {
		t.Fatalf("WorkOne of an unknown class: %q", ft.failed)
	}
}
