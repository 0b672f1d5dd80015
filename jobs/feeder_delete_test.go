package jobs_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/sidekiq"
)

// "Delete queue" pressed while the split is pushing, between the feeder's
// look at the queue's listing and its next push (here: inside that push,
// from a client middleware): the push does not list the queue again and
// hide the deletion, the run ends cancelled. (A plain push re-listed it;
// the supervisor then took the deleted rows for lost and pushed them all
// again.)
func TestFeederSeesADeleteQueueBetweenItsCheckAndItsPush(t *testing.T) {
	var deleted atomic.Bool
	var e *env
	e = newEnvWith(t, envOptions{
		launch: func(context.Context, launcher.Request) error { return nil }, // no worker: rows wait
		deps: func(d *jobs.Deps) {
			d.SplitWindow, d.BatchSize = 1000, 10
			d.Client = sidekiq.NewClient(d.Pool, sidekiq.ClientOptions{Middleware: []sidekiq.ClientMiddleware{
				func(ctx context.Context, j *sidekiq.Job) error {
					var row int
					if j.Class != contract.Row.Name {
						return nil
					}
					if ok, _ := j.Field(contract.FieldRow, &row); !ok || row != 35 || !deleted.CompareAndSwap(false, true) {
						return nil
					}
					// What the dashboard's button does.
					c := d.Pool.Get()
					defer c.Close()
					_ = c.Send("MULTI")
					_ = c.Send("UNLINK", "queue:"+j.Queue)
					_ = c.Send("SREM", "queues", j.Queue)
					_, err := c.Do("EXEC")
					return err
				},
			}})
		},
	})
	var b strings.Builder
	b.WriteString("id,name\n")
	for i := 1; i <= 200; i++ {
		b.WriteString("S-1,n\n")
	}
	id := e.newReport(models.ReportTypeXLSX)
	e.split(b.String(), "text", id)
	var st models.CsvProcessingStatus
	waitFor(t, 20*time.Second, "the run to end", func() bool {
		rep, err := e.models.ReportByID(context.Background(), id)
		if err != nil || rep.Token == "" {
			return false
		}
		st = e.status(rep.Token)
		return st.Ended()
	})
	if !deleted.Load() {
		t.Fatal("the queue was never deleted: the fault did not land")
	}
	if st.RunState() != models.RunCancelled || !strings.Contains(st.StateReason, "deleted") {
		t.Fatalf("status = %+v, want cancelled because the queue was deleted", st)
	}
}
