package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"
)

// fixedClock returns a settable clock.
type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fixedClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestStore(db *gorm.DB) (*Store, *fixedClock) {
	clk := &fixedClock{t: time.Date(2025, 4, 5, 6, 7, 8, 123456789, time.FixedZone("JST", 9*3600))}
	return &Store{DB: db, Now: clk.Now}, clk
}

func TestEnums(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		s    string
		want ReportType
	}{{"xlsx", ReportTypeXLSX}, {"pdf", ReportTypePDF}, {"PDF", ReportTypePDF}, {" xlsx ", ReportTypeXLSX}} {
		got, err := ParseReportType(tt.s)
		if err != nil || got != tt.want {
			t.Errorf("ParseReportType(%q) = %v, %v", tt.s, got, err)
		}
	}
	for _, s := range []string{"", "csv", "default", "0"} {
		if _, err := ParseReportType(s); !errors.Is(err, ErrBadEnum) {
			t.Errorf("ParseReportType(%q) = %v, want ErrBadEnum", s, err)
		}
	}
	if ReportTypeXLSX.String() != "xlsx" || ReportTypePDF.String() != "pdf" || ReportType(7).String() != "ReportType(7)" {
		t.Error("ReportType.String")
	}
	if int(ReportTypeXLSX) != 0 || int(ReportTypePDF) != 1 {
		t.Error("ReportType values differ from Rails enum")
	}
	wantStatus := map[string]ReportStatus{"pending": 0, "processing": 1, "completed": 2, "failed": 3}
	for s, v := range wantStatus {
		got, err := ParseReportStatus(s)
		if err != nil || got != v || v.String() != s {
			t.Errorf("ParseReportStatus(%q) = %v, %v; String = %q", s, got, err, v.String())
		}
	}
	if _, err := ParseReportStatus("done"); !errors.Is(err, ErrBadEnum) {
		t.Errorf("ParseReportStatus(done) = %v", err)
	}
	if ReportStatus(9).String() != "ReportStatus(9)" || ReportStatus(-1).String() != "ReportStatus(-1)" {
		t.Error("ReportStatus.String out of range")
	}
	b, _ := json.Marshal(struct {
		T ReportType
		S ReportStatus
	}{ReportTypePDF, ReportFailed})
	if string(b) != `{"T":"pdf","S":"failed"}` {
		t.Errorf("json = %s", b)
	}
	var back struct {
		T ReportType
		S ReportStatus
	}
	if err := json.Unmarshal(b, &back); err != nil || back.T != ReportTypePDF || back.S != ReportFailed {
		t.Errorf("unmarshal = %+v, %v", back, err)
	}
}

func TestReports(t *testing.T) {
	eachDB(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		st, clk := newTestStore(db)
		r := ClientReport{ReportType: ReportTypePDF, SecurityHash: "h", SourceKey: "uploads/x.csv"}
		if err := st.CreateReport(ctx, &r); err != nil {
			t.Fatal(err)
		}
		if r.ID == 0 {
			t.Fatal("no id")
		}
		got, err := st.ReportByID(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantTime := clk.Now().UTC().Truncate(time.Microsecond)
		if got.Status != ReportPending || got.ReportType != ReportTypePDF || got.SourceKey != "uploads/x.csv" || got.Count != 0 {
			t.Fatalf("created = %+v", got)
		}
		if !got.CreatedAt.Equal(wantTime) || !got.UpdatedAt.Equal(wantTime) {
			t.Fatalf("timestamps %v %v, want %v", got.CreatedAt, got.UpdatedAt, wantTime)
		}

		clk.Add(time.Second)
		if err := st.MarkReportProcessing(ctx, r.ID, "tok-1"); err != nil {
			t.Fatal(err)
		}
		// Same values again still finds the row (MySQL clientFoundRows).
		if err := st.MarkReportProcessing(ctx, r.ID, "tok-1"); err != nil {
			t.Fatal(err)
		}
		got, err = st.ReportByToken(ctx, "tok-1")
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != r.ID || got.Status != ReportProcessing || !got.UpdatedAt.Equal(wantTime.Add(time.Second)) {
			t.Fatalf("processing = %+v", got)
		}

		if err := st.MarkReportCompleted(ctx, r.ID, "reports/tok-1.zip", 42); err != nil {
			t.Fatal(err)
		}
		got, _ = st.ReportByID(ctx, r.ID)
		if got.Status != ReportCompleted || got.File != "reports/tok-1.zip" || got.Count != 42 {
			t.Fatalf("completed = %+v", got)
		}
		if err := st.MarkReportFailed(ctx, r.ID, "zip: disk full"); err != nil {
			t.Fatal(err)
		}
		got, _ = st.ReportByID(ctx, r.ID)
		if got.Status != ReportFailed || got.ErrorMessage != "zip: disk full" {
			t.Fatalf("failed = %+v", got)
		}
		if err := st.SetReportSource(ctx, r.ID, "uploads/y.csv"); err != nil {
			t.Fatal(err)
		}
		got, _ = st.ReportByID(ctx, r.ID)
		if got.SourceKey != "uploads/y.csv" {
			t.Fatalf("source = %q", got.SourceKey)
		}

		// Newest report wins for a token.
		r2 := ClientReport{Token: "tok-1"}
		if err := st.CreateReport(ctx, &r2); err != nil {
			t.Fatal(err)
		}
		if got, _ := st.ReportByToken(ctx, "tok-1"); got.ID != r2.ID {
			t.Fatalf("ReportByToken = %d, want newest %d", got.ID, r2.ID)
		}

		// Missing rows.
		if _, err := st.ReportByID(ctx, 99999); !errors.Is(err, ErrNotFound) {
			t.Fatalf("ReportByID missing = %v", err)
		}
		if _, err := st.ReportByToken(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("ReportByToken missing = %v", err)
		}
		for name, err := range map[string]error{
			"processing": st.MarkReportProcessing(ctx, 99999, "x"),
			"completed":  st.MarkReportCompleted(ctx, 99999, "f", 1),
			"failed":     st.MarkReportFailed(ctx, 99999, "m"),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("mark %s on missing = %v", name, err)
			}
		}
	})
}

func TestStatuses(t *testing.T) {
	eachDB(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		st, clk := newTestStore(db)
		s, err := st.CreateStatus(ctx, "tok-a", "report-aaaa", 10)
		if err != nil {
			t.Fatal(err)
		}
		if s.ID == 0 || s.Token != "tok-a" || s.QueueName != "report-aaaa" || s.TotalCount != 10 || s.DoneCount != 0 ||
			s.FailedCount != 0 || s.WorkerStartedAt != nil || s.FinalizedAt != nil || s.ForceShutdownAt != nil {
			t.Fatalf("created = %+v", s)
		}
		// Idempotent: the first row stays as it was.
		clk.Add(time.Minute)
		again, err := st.CreateStatus(ctx, "tok-a", "other", 99)
		if err != nil {
			t.Fatal(err)
		}
		if again.ID != s.ID || again.TotalCount != 10 || again.QueueName != "report-aaaa" || !again.CreatedAt.Equal(s.CreatedAt) {
			t.Fatalf("second create = %+v, first %+v", again, s)
		}

		if err := st.IncrementDone(ctx, "tok-a", 3); err != nil {
			t.Fatal(err)
		}
		if err := st.IncrementDone(ctx, "tok-a", 4); err != nil {
			t.Fatal(err)
		}
		if err := st.IncrementFailed(ctx, "tok-a", 2); err != nil {
			t.Fatal(err)
		}
		s, _ = st.StatusByToken(ctx, "tok-a")
		if s.DoneCount != 7 || s.FailedCount != 2 || s.Finished() {
			t.Fatalf("counts = %+v", s)
		}
		if err := st.SetTotal(ctx, "tok-a", 9); err != nil {
			t.Fatal(err)
		}
		s, _ = st.StatusByToken(ctx, "tok-a")
		if s.TotalCount != 9 || !s.Finished() {
			t.Fatalf("after SetTotal = %+v", s)
		}
		if err := st.SetLastError(ctx, "tok-a", "row 3: bad date"); err != nil {
			t.Fatal(err)
		}

		// Worker launch guard and record.
		ok, err := st.ClaimWorkerLaunch(ctx, "tok-a")
		if err != nil || !ok {
			t.Fatalf("first ClaimWorkerLaunch = %v, %v", ok, err)
		}
		ok, err = st.ClaimWorkerLaunch(ctx, "tok-a")
		if err != nil || ok {
			t.Fatalf("second ClaimWorkerLaunch = %v, %v", ok, err)
		}
		started := time.Date(2025, 4, 5, 0, 0, 0, 999999999, time.UTC)
		arn := "arn:aws:ecs:ap-northeast-1:123456789012:task/cluster/abcdef"
		if err := st.RecordWorker(ctx, "tok-a", arn, started); err != nil {
			t.Fatal(err)
		}
		s, _ = st.StatusByToken(ctx, "tok-a")
		if s.WorkerTaskArn != arn || s.WorkerStartedAt == nil || !s.WorkerStartedAt.Equal(started.Truncate(time.Microsecond)) {
			t.Fatalf("worker = %q %v", s.WorkerTaskArn, s.WorkerStartedAt)
		}
		if s.LastError != "row 3: bad date" {
			t.Fatalf("last_error = %q", s.LastError)
		}

		// Finalize claim, release, claim again.
		ok, err = st.ClaimFinalize(ctx, "tok-a")
		if err != nil || !ok {
			t.Fatalf("ClaimFinalize = %v, %v", ok, err)
		}
		if ok, _ := st.ClaimFinalize(ctx, "tok-a"); ok {
			t.Fatal("second ClaimFinalize won")
		}
		s, _ = st.StatusByToken(ctx, "tok-a")
		if s.FinalizedAt == nil || !s.FinalizedAt.Equal(clk.Now().UTC().Truncate(time.Microsecond)) {
			t.Fatalf("finalized_at = %v", s.FinalizedAt)
		}
		if err := st.ReleaseFinalize(ctx, "tok-a"); err != nil {
			t.Fatal(err)
		}
		s, _ = st.StatusByToken(ctx, "tok-a")
		if s.FinalizedAt != nil {
			t.Fatalf("finalized_at after release = %v", s.FinalizedAt)
		}
		if ok, _ := st.ClaimFinalize(ctx, "tok-a"); !ok {
			t.Fatal("ClaimFinalize after release lost")
		}

		if err := st.SetForceShutdown(ctx, "tok-a"); err != nil {
			t.Fatal(err)
		}
		s, _ = st.StatusByToken(ctx, "tok-a")
		if s.ForceShutdownAt == nil {
			t.Fatal("force_shutdown_at not set")
		}

		// Missing rows.
		if _, err := st.StatusByToken(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("StatusByToken missing = %v", err)
		}
		for name, err := range map[string]error{
			"done":   st.IncrementDone(ctx, "nope", 1),
			"failed": st.IncrementFailed(ctx, "nope", 1),
			"total":  st.SetTotal(ctx, "nope", 1),
			"worker": st.RecordWorker(ctx, "nope", "arn", time.Now()),
			"force":  st.SetForceShutdown(ctx, "nope"),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s on missing = %v", name, err)
			}
		}
		if ok, err := st.ClaimFinalize(ctx, "nope"); ok || err != nil {
			t.Errorf("ClaimFinalize missing = %v, %v", ok, err)
		}
		if ok, err := st.ClaimWorkerLaunch(ctx, "nope"); ok || err != nil {
			t.Errorf("ClaimWorkerLaunch missing = %v, %v", ok, err)
		}

		// Delete, twice.
		if err := st.DeleteStatus(ctx, "tok-a"); err != nil {
			t.Fatal(err)
		}
		if err := st.DeleteStatus(ctx, "tok-a"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.StatusByToken(ctx, "tok-a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after delete = %v", err)
		}
	})
}

func TestRecentStatuses(t *testing.T) {
	eachDB(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		st, clk := newTestStore(db)
		for i := range 12 {
			clk.Add(time.Second)
			if _, err := st.CreateStatus(ctx, fmt.Sprintf("tok-%02d", i), "q", i); err != nil {
				t.Fatal(err)
			}
		}
		rows, err := st.RecentStatuses(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 10 || rows[0].Token != "tok-11" || rows[9].Token != "tok-02" {
			var toks []string
			for _, r := range rows {
				toks = append(toks, r.Token)
			}
			t.Fatalf("recent = %v", toks)
		}
	})
}

// TestConcurrentClaims races 20 goroutines per claim on every database:
// exactly one wins, and concurrent increments lose nothing.
func TestConcurrentClaims(t *testing.T) {
	eachDB(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		st := NewStore(db)
		// Counting goes to a run that is never finalized: increments stop
		// once a run is finalized (TestIncrementsStopAtFinalize).
		if _, err := st.CreateStatus(ctx, "tok-race-count", "q", 20); err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateStatus(ctx, "tok-race", "q", 20); err != nil {
			t.Fatal(err)
		}
		const n = 20
		var finalizeWins, launchWins atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, 3*n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, err := st.ClaimFinalize(ctx, "tok-race")
				if err != nil {
					errs <- err
				}
				if ok {
					finalizeWins.Add(1)
				}
				ok, err = st.ClaimWorkerLaunch(ctx, "tok-race")
				if err != nil {
					errs <- err
				}
				if ok {
					launchWins.Add(1)
				}
				if err := st.IncrementDone(ctx, "tok-race-count", 1); err != nil {
					errs <- err
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if got := finalizeWins.Load(); got != 1 {
			t.Errorf("ClaimFinalize won %d times, want 1", got)
		}
		if got := launchWins.Load(); got != 1 {
			t.Errorf("ClaimWorkerLaunch won %d times, want 1", got)
		}
		s, err := st.StatusByToken(ctx, "tok-race-count")
		if err != nil {
			t.Fatal(err)
		}
		if s.DoneCount != n {
			t.Errorf("done_count = %d, want %d", s.DoneCount, n)
		}
	})
}

// TestConcurrentCreateStatus: a retried SplitCsvJob racing itself makes one row.
func TestConcurrentCreateStatus(t *testing.T) {
	eachDB(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		st := NewStore(db)
		var wg sync.WaitGroup
		ids := make([]int64, 10)
		errs := make([]error, 10)
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := st.CreateStatus(ctx, "tok-create", "q", 5)
				ids[i], errs[i] = s.ID, err
			}()
		}
		wg.Wait()
		for i := range ids {
			if errs[i] != nil || ids[i] != ids[0] {
				t.Errorf("create %d = id %d, %v; want id %d", i, ids[i], errs[i], ids[0])
			}
		}
	})
}

// TestSQLiteSeveralHandles: two separately opened pools on one file (as
// two processes would) race for the claims; WAL and busy_timeout keep both
// writing without "database is locked".
func TestSQLiteSeveralHandles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	first, cfg := openSQLite(t)
	if err := Migrate(ctx, first); err != nil {
		t.Fatal(err)
	}
	second := mustOpen(t, cfg)
	if err := Migrate(ctx, second); err != nil {
		t.Fatal(err)
	}
	stores := []*Store{NewStore(first), NewStore(second)}
	if _, err := stores[0].CreateStatus(ctx, "tok-multi", "q", 40); err != nil {
		t.Fatal(err)
	}
	if _, err := stores[0].CreateStatus(ctx, "tok-multi-count", "q", 40); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := stores[i%2]
			if err := st.IncrementDone(ctx, "tok-multi-count", 1); err != nil {
				t.Error(err)
			}
			ok, err := st.ClaimFinalize(ctx, "tok-multi")
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	s, err := stores[1].StatusByToken(ctx, "tok-multi-count")
	if err != nil {
		t.Fatal(err)
	}
	if s.DoneCount != 40 || wins.Load() != 1 {
		t.Fatalf("done_count %d, finalize wins %d", s.DoneCount, wins.Load())
	}
}

// TestIncrementsStopAtFinalize: once finalized, the counts the finalizer set
// are final; a row job finishing its bookkeeping late changes nothing.
func TestIncrementsStopAtFinalize(t *testing.T) {
	eachDB(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		st := NewStore(db)
		if _, err := st.CreateStatus(ctx, "tok-fin", "q", 3); err != nil {
			t.Fatal(err)
		}
		if err := st.IncrementDone(ctx, "tok-fin", 2); err != nil {
			t.Fatal(err)
		}
		if ok, err := st.ClaimFinalize(ctx, "tok-fin"); !ok || err != nil {
			t.Fatalf("claim: %v %v", ok, err)
		}
		if err := st.SetCounts(ctx, "tok-fin", 3, 0); err != nil {
			t.Fatal(err)
		}
		if err := st.IncrementDone(ctx, "tok-fin", 1); err != nil {
			t.Fatalf("late increment: %v", err)
		}
		if err := st.IncrementFailed(ctx, "tok-fin", 1); err != nil {
			t.Fatalf("late increment: %v", err)
		}
		s, err := st.StatusByToken(ctx, "tok-fin")
		if err != nil {
			t.Fatal(err)
		}
		if s.DoneCount != 3 || s.FailedCount != 0 {
			t.Fatalf("counts moved after finalize: done %d failed %d", s.DoneCount, s.FailedCount)
		}
	})
}

func TestRunStates(t *testing.T) {
	eachDB(t, func(t *testing.T, db *gorm.DB) {
		s, _ := newTestStore(db)
		ctx := context.Background()
		tok := "3b1f2a4c-1111-4222-8333-444455556666"
		if _, err := s.CreateStatus(ctx, tok, "report-x", 0); err != nil {
			t.Fatal(err)
		}
		if err := s.SetState(ctx, tok, RunSplitting, ""); err != nil {
			t.Fatal(err)
		}
		open, err := s.UnfinishedStatuses(ctx, 10)
		if err != nil || len(open) != 1 || open[0].RunState() != RunSplitting {
			t.Fatalf("unfinished = %+v, %v", open, err)
		}
		if n, err := s.NoteLaunchAttempt(ctx, tok); err != nil || n != 1 {
			t.Fatalf("launch attempt = %d, %v", n, err)
		}
		ended, err := s.EndRun(ctx, tok, RunCancelled, "cancelled by user")
		if err != nil || !ended {
			t.Fatalf("EndRun = %v, %v", ended, err)
		}
		if again, _ := s.EndRun(ctx, tok, RunFailed, "late"); again {
			t.Fatal("a run ended twice")
		}
		_ = s.SetState(ctx, tok, RunProcessing, "ignored once ended")
		st, err := s.StatusByToken(ctx, tok)
		if err != nil || st.RunState() != RunCancelled || st.StateReason != "cancelled by user" || !st.Ended() || st.EndedAt == nil {
			t.Fatalf("status = %+v, %v", st, err)
		}
		if open, _ := s.UnfinishedStatuses(ctx, 10); len(open) != 0 {
			t.Fatalf("an ended run is still listed: %+v", open)
		}
	})
}
