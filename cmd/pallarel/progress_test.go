package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProgressPlainAndMonotonic: off a terminal the progress is plain
// lines (a tenth of the run, a state change or 30 s apart), and the
// fraction shown never goes back when the real total replaces an estimate.
func TestProgressPlainAndMonotonic(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	p := newProgress(&out, false)
	est := func(n int) *int { return &n }
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	steps := []status{
		{State: "splitting", EstimatedTotal: est(3651), DoneCount: 1200, Percentage: 32.8},
		{State: "splitting", EstimatedTotal: est(3651), DoneCount: 1210, Percentage: 33.1}, // no line: not a tenth further
		{State: "processing", TotalCount: 5000, DoneCount: 1300, Percentage: 26},           // the real total: 26 % < 33.1 %
		{State: "processing", TotalCount: 5000, DoneCount: 2200, Percentage: 44},
		{State: "completed", TotalCount: 5000, DoneCount: 5000, Percentage: 100},
	}
	for _, st := range steps {
		p.show(st, now)
		now = now.Add(time.Second)
	}
	p.close()
	want := "splitting: 1200 done, 0 failed of ~3651 (32.8%)\n" +
		"processing: 1300 done, 0 failed of 5000 (33.1%)\n" +
		"processing: 2200 done, 0 failed of 5000 (44.0%)\n" +
		"completed: 5000 done, 0 failed of 5000 (100.0%)\n"
	if got := out.String(); got != want || strings.Contains(got, "\r") {
		t.Errorf("progress lines:\n%s\nwant:\n%s", got, want)
	}
}
