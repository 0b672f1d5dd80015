package models

import (
	"context"
	"testing"

	"gorm.io/gorm"
)

func TestRunControl(t *testing.T) {
	eachDB(t, func(t *testing.T, db *gorm.DB) {
		s, _ := newTestStore(db)
		ctx := context.Background()
		tok := "7c2e9a10-2222-4333-8444-555566667777"
		if _, err := s.CreateStatus(ctx, tok, "report-x", 0); err != nil {
			t.Fatal(err)
		}
		if err := s.SetSplitProgress(ctx, tok, 1<<33, 1<<34, 1234); err != nil {
			t.Fatal(err)
		}
		st, err := s.StatusByToken(ctx, tok)
		if err != nil || st.SplitBytesRead != 1<<33 || st.SplitBytesTotal != 1<<34 || st.SplitRows != 1234 {
			t.Fatalf("split progress = %d/%d rows %d, %v", st.SplitBytesRead, st.SplitBytesTotal, st.SplitRows, err)
		}
		// A running run is not reopened; a completed one is, once.
		if ok, err := s.ReopenRun(ctx, tok, 8, 0); ok || err != nil {
			t.Fatalf("reopen of a running run = %v, %v", ok, err)
		}
		if err := s.RecordWorker(ctx, tok, "task-1", s.now()); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.ClaimFinalize(ctx, tok); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if err := s.MarkEnded(ctx, tok, RunCompleted, ""); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.ReopenRun(ctx, tok, 8, 1); !ok || err != nil {
			t.Fatalf("reopen = %v, %v", ok, err)
		}
		if ok, _ := s.ReopenRun(ctx, tok, 8, 1); ok {
			t.Fatal("reopened twice")
		}
		st, _ = s.StatusByToken(ctx, tok)
		if st.Ended() || st.EndedAt != nil || st.RunState() != RunProcessing || st.DoneCount != 8 || st.FailedCount != 1 ||
			st.WorkerStartedAt != nil || st.WorkerTaskArn != "" || st.StateReason != "" {
			t.Fatalf("reopened status = %+v", st)
		}
		if ok, _ := s.ClaimWorkerLaunch(ctx, tok); !ok {
			t.Fatal("a reopened run cannot launch a worker")
		}
		// A cancelled run is never reopened.
		if ok, _ := s.EndRun(ctx, tok, RunCancelled, "cancelled by user"); !ok {
			t.Fatal("EndRun")
		}
		if ok, _ := s.ReopenRun(ctx, tok, 0, 0); ok {
			t.Fatal("a cancelled run was reopened")
		}

		r := ClientReport{Token: tok}
		if err := s.CreateReport(ctx, &r); err != nil {
			t.Fatal(err)
		}
		if err := s.SetReportWebhook(ctx, r.ID, "https://example.com/hook?a=1"); err != nil {
			t.Fatal(err)
		}
		if r, _ = s.ReportByID(ctx, r.ID); r.WebhookURL != "https://example.com/hook?a=1" {
			t.Fatalf("webhook url = %q", r.WebhookURL)
		}
	})
}
