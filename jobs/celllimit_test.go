package jobs_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"github.com/pallarel/pallarel/models"
)

// TestLongCellNeverDoneInSilence: a value longer than an XLSX cell holds
// fails its row with the reason (in the manifest and the failed count),
// at once rather than after Sidekiq's retries; a value at the limit is
// kept whole.
func TestLongCellNeverDoneInSilence(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{})
	id := e.newReport(models.ReportTypeXLSX)
	atLimit := strings.Repeat("a", 32_767)
	csv := fmt.Sprintf("id,note\nlong,%s\nlimit,%s\nshort,ok\n", strings.Repeat("長", 40_000), atLimit)
	e.split(csv, "xlsx", id)
	rep := e.completed(id, 60*time.Second)
	files := e.readZip(rep.File)
	m := manifestRows(t, files)
	if m[1][1] != "failed" || !strings.Contains(m[1][2], "32,767") || !strings.Contains(m[1][2], `column "note" has 40000`) || m[1][0] != "" {
		t.Errorf("row 1 (40,000 characters): %q, want failed with the reason and no file", m[1])
	}
	for _, n := range []int{2, 3} {
		if m[n][1] != "done" {
			t.Errorf("row %d: %q", n, m[n])
		}
	}
	st := e.status(rep.Token)
	if st.DoneCount != 2 || st.FailedCount != 1 {
		t.Errorf("counts: done %d failed %d", st.DoneCount, st.FailedCount)
	}
	f, err := excelize.OpenReader(bytes.NewReader(files[m[2][0]]))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := f.GetRows(f.GetSheetName(0))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rows {
		for _, c := range r {
			found = found || c == atLimit
		}
	}
	if !found {
		t.Error("the 32,767-character value is not whole in its file")
	}
}
