package retry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/csvrows"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/ledger"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/models/modelstest"
	"github.com/pallarel/pallarel/reportzip"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/run/retry"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/storage"
)

// bundle is one test's Retrier on its own Redis database, SQLite file and
// storage folder; its row jobs carry the row's number and cells, and it
// records the launches and finalizers asked for.
type bundle struct {
	db       *redistest.DB
	runs     *models.Store
	store    storage.Store
	ledger   ledger.Ledger
	r        *retry.Retrier
	rt       router.Router
	mu       sync.Mutex
	launched []string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{db: redistest.New(t), runs: models.NewStore(modelstest.SQLite(t))}
	var err error
	if b.rt, err = router.New(16); err != nil {
		t.Fatal(err)
	}
	store, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b.store = store
	b.ledger = ledger.Ledger{Pool: b.db.Pool, Store: store}
	client := sidekiq.NewClient(b.db.Pool, sidekiq.ClientOptions{})
	b.r, err = retry.New(retry.Params{
		Runs: b.runs, Store: store, Ledger: b.ledger, Packer: ledger.NewPacker(store, b.ledger), Client: client,
		Queue: b.rt.For,
		RowJobs: func(_ context.Context, token, queue string, spec contract.RunSpec, rows *csvrows.Reader) (func(csvrows.Row) (*sidekiq.Job, error), error) {
			return func(row csvrows.Row) (*sidekiq.Job, error) {
				j, err := sidekiq.NewJob(contract.Row.Name, row.Fields, spec.Type, spec.ReportID, row.Number, token)
				if err == nil {
					j.Queue = queue
				}
				return j, err
			}, nil
		},
		Finalizer: func(queue, typ string, reportID int64, token string) (*sidekiq.Job, error) {
			j, err := sidekiq.NewJob(contract.Finalize.Name, typ, reportID, token)
			if err == nil {
				j.Queue = queue
			}
			return j, err
		},
		Launch: func(_ context.Context, token, _ string) {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.launched = append(b.launched, token)
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// endedRun stores upload as a run's CSV, read with encoding, and records
// the run as completed with manifest in its ZIP (a file per done row).
func (b *bundle) endedRun(t *testing.T, upload []byte, encoding string, manifest []reportzip.ManifestEntry) (string, int64) {
	t.Helper()
	ctx := context.Background()
	token := router.NewToken()
	queue, _ := b.rt.For(token)
	src := contract.UploadKey(token)
	if err := b.store.Put(ctx, src, bytes.NewReader(upload)); err != nil {
		t.Fatal(err)
	}
	rep := models.ClientReport{Token: token, ReportType: models.ReportTypeText, SourceKey: src}
	if err := b.runs.CreateReport(ctx, &rep); err != nil {
		t.Fatal(err)
	}
	if _, err := b.runs.CreateStatus(ctx, token, queue, len(manifest)); err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(contract.RunSpec{SourceKey: src, Encoding: encoding, Type: "text", ReportID: rep.ID})
	failed := 0
	var zbuf bytes.Buffer
	zw := reportzip.NewWriter(&zbuf)
	for _, m := range manifest {
		if m.Status == reportzip.StatusFailed {
			failed++
			continue
		}
		if _, err := zw.Add(m.File, strings.NewReader("row file "+m.File), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(zw.AddManifest(manifest), zw.Close()); err != nil {
		t.Fatal(err)
	}
	if err := b.store.Put(ctx, contract.ResultKey(token), &zbuf); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(b.runs.SetSourceSpec(ctx, token, string(spec)), b.runs.IncrementFailed(ctx, token, failed)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.runs.ClaimFinalize(ctx, token); err != nil {
		t.Fatal(err)
	}
	err := errors.Join(b.runs.MarkReportCompleted(ctx, rep.ID, contract.ResultKey(token), len(manifest)),
		b.runs.MarkEnded(ctx, token, models.RunCompleted, ""),
		// The finalizer's last step: the ledger expires.
		b.ledger.SetTotal(ctx, token, len(manifest)), b.ledger.Expire(ctx, token, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return token, rep.ID
}

// queued is the row jobs on token's queue: row number → the cells pushed.
func (b *bundle) queued(t *testing.T, token string) (rows map[int]map[string]string, finalizers int) {
	t.Helper()
	queue, _ := b.rt.For(token)
	raw, err := redis.ByteSlices(b.db.Do(t, "LRANGE", "queue:"+queue, 0, -1), nil)
	if err != nil {
		t.Fatal(err)
	}
	rows = map[int]map[string]string{}
	for _, r := range raw {
		var j struct {
			Class string            `json:"class"`
			Args  []json.RawMessage `json:"args"`
		}
		if err := json.Unmarshal(r, &j); err != nil {
			t.Fatal(err)
		}
		if j.Class == contract.Finalize.Name {
			finalizers++
			continue
		}
		var cells map[string]string
		var n int
		if err := errors.Join(json.Unmarshal(j.Args[0], &cells), json.Unmarshal(j.Args[3], &n)); err != nil {
			t.Fatal(err)
		}
		rows[n] = cells
	}
	return rows, finalizers
}

// sjis is "id,name" rows in Shift_JIS. Row 2's name, ﾂｱ (half-width
// katakana, 0xC2 0xB1), is also valid UTF-8 (±), so a reader that guessed
// the encoding again would read the whole file as UTF-8.
var sjis = []byte("id,name\r\n1,a\r\n2,\xc2\xb1\r\n3,\"broken\r\n")

// A retry pushes the failed rows only, read as the split read them (the
// run's forced encoding, not a guess), reopens the run with the done rows
// restored, launches its worker and pushes one finalizer; a row that still
// cannot be parsed is failed again at once.
func TestRetryPushesOnlyFailedRowsAsSplit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	token, _ := b.endedRun(t, sjis, csvrows.EncodingShiftJIS, []reportzip.ManifestEntry{
		{Row: 1, File: "0000001-a.txt", Status: reportzip.StatusDone},
		{Row: 2, Status: reportzip.StatusFailed, Error: "renderer down"},
		{Row: 3, Status: reportzip.StatusFailed, Error: "line 4: unterminated quote"},
	})
	n, err := b.r.RetryFailed(ctx, token)
	if err != nil || n != 1 {
		t.Fatalf("RetryFailed = %d, %v; want 1 row pushed", n, err)
	}
	rows, fins := b.queued(t, token)
	if want := map[string]string{"id": "2", "name": "ﾂｱ"}; len(rows) != 1 || !mapsEqual(rows[2], want) {
		t.Errorf("rows pushed %v, want only row 2 as %v", rows, want)
	}
	if fins != 1 {
		t.Errorf("%d finalizers pushed", fins)
	}
	if !slices.Equal(b.launched, []string{token}) {
		t.Errorf("launched %v", b.launched)
	}
	st, err := b.runs.StatusByToken(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ended() || st.DoneCount != 1 || st.FailedCount != 1 {
		t.Errorf("reopened run: ended %v done %d failed %d, want open, 1 done, 1 failed (row 3)", st.Ended(), st.DoneCount, st.FailedCount)
	}
	got, err := b.ledger.Recorded(ctx, token, []int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []bool{true, false, true}) {
		t.Errorf("ledger after restore: rows 1-3 recorded %v, want done row 1 and failed row 3 only", got)
	}
	failed, _, err := b.ledger.Failed(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 1 || failed[0].Row != 3 || !strings.HasPrefix(failed[0].Error, "line 4 (row 3)") {
		t.Errorf("failed again: %+v, want row 3 with the reader's own line and row, once", failed)
	}
	if _, err := b.r.RetryFailed(ctx, token); !errors.Is(err, contract.ErrNotRetryable) {
		t.Errorf("retry of a reopened run: %v", err)
	}
}

// A run whose only failed rows cannot be parsed has nothing to retry and
// stays as it ended; nothing is pushed or launched.
func TestRetryNothingRunnable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	token, _ := b.endedRun(t, sjis, csvrows.EncodingShiftJIS, []reportzip.ManifestEntry{
		{Row: 1, File: "0000001-a.txt", Status: reportzip.StatusDone},
		{Row: 2, File: "0000002-b.txt", Status: reportzip.StatusDone},
		{Row: 3, Status: reportzip.StatusFailed, Error: "line 4: unterminated quote"},
	})
	if n, err := b.r.RetryFailed(context.Background(), token); !errors.Is(err, contract.ErrNothingToRetry) || n != 0 {
		t.Fatalf("RetryFailed = %d, %v; want ErrNothingToRetry", n, err)
	}
	if rows, fins := b.queued(t, token); len(rows) != 0 || fins != 0 || len(b.launched) != 0 {
		t.Errorf("pushed %v and %d finalizers, launched %v", rows, fins, b.launched)
	}
	if st, err := b.runs.StatusByToken(context.Background(), token); err != nil || st.RunState() != models.RunCompleted {
		t.Errorf("run after a refused retry: %v %v", st.RunState(), err)
	}
}

// The failed-rows page reads an ended run's manifest, a page at a time.
func TestFailedRowsFromTheManifest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	token, _ := b.endedRun(t, sjis, csvrows.EncodingShiftJIS, []reportzip.ManifestEntry{
		{Row: 1, Status: reportzip.StatusFailed, Error: "one"},
		{Row: 2, File: "0000002-b.txt", Status: reportzip.StatusDone},
		{Row: 3, Status: reportzip.StatusFailed, Error: "three"},
	})
	page, err := b.r.FailedRows(context.Background(), token, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if page.Source != "manifest" || page.Total != 2 || len(page.Rows) != 1 || page.Rows[0] != (contract.FailedRow{Row: 3, Error: "three"}) {
		t.Errorf("page %+v", page)
	}
	if _, err := b.r.FailedRows(context.Background(), "../x", 0, 10); err == nil {
		t.Error("a bad token was read")
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
