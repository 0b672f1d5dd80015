package jobs_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/encoding/japanese"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/models"
)

// TestSplitShiftJISByReference: a Shift_JIS upload, its encoding named or
// detected, runs by row references (csvrows finds the rows' exact bytes)
// with the cells decoded as the split decoded them: CP932 characters, a
// quoted line break, half-width katakana and a quoted comma. A row with an
// invalid sequence fails with the same reason as before, and the row after
// it runs.
func TestSplitShiftJISByReference(t *testing.T) {
	t.Parallel()
	const text = "個別識別番号,保険者名,年度\r\nJ-01,髙橋保険①,令和6年\r\nJ-02,\"全国健康\n保険協会\",2024\r\n"
	sjis, err := japanese.ShiftJIS.NewEncoder().String(text)
	if err != nil {
		t.Fatal(err)
	}
	sjis += "J-03,\x81 ,2024\r\n" // a lead byte and a space: no Shift_JIS
	tail, err := japanese.ShiftJIS.NewEncoder().String("J-04,\"ｹﾝﾎﾟ,ソ表\",2025")
	if err != nil {
		t.Fatal(err)
	}
	sjis += tail
	e := newEnv(t, nil)
	if err := e.store.Put(context.Background(), "uploads/sjis.csv", strings.NewReader(sjis)); err != nil {
		t.Fatal(err)
	}
	for _, enc := range []string{"", "auto", "shift_jis", "cp932"} {
		t.Run("encoding="+enc, func(t *testing.T) {
			id := e.newReport(models.ReportTypeXLSX)
			e.split(contract.SourceRef{SourceKey: "uploads/sjis.csv", Encoding: enc}, "text", id)
			rep := e.completed(id, 30*time.Second)
			files := e.readZip(rep.File)
			want := map[string]string{
				"row-000001-J-01.txt": "個別識別番号: J-01\n保険者名: 髙橋保険①\n年度: 令和6年\n",
				"row-000002-J-02.txt": "個別識別番号: J-02\n保険者名: 全国健康\n  保険協会\n年度: 2024\n",
				"row-000004-J-04.txt": "個別識別番号: J-04\n保険者名: ｹﾝﾎﾟ,ソ表\n年度: 2025\n",
			}
			if len(files) != len(want)+1 {
				t.Fatalf("zip: %v", names(files))
			}
			for name, body := range want {
				if got := string(files[name]); got != body {
					t.Errorf("%s: %q, want %q", name, got, body)
				}
			}
			if m := string(files["manifest.csv"]); !strings.Contains(m, `3,,failed,"line 5 (row 3) column ""保険者名"": invalid text encoding: invalid or unmapped Shift_JIS byte sequence"`) {
				t.Errorf("manifest: %s", m)
			}
		})
	}
}

// TestSplitTokenFromReference: the token chosen at upload is the run's token.
func TestSplitTokenFromReference(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	const token = "0f8fad5b-d9cb-469f-a165-70867728950e"
	if err := e.store.Put(context.Background(), "uploads/tok.csv", strings.NewReader(outputCSV)); err != nil {
		t.Fatal(err)
	}
	id := e.newReport(models.ReportTypeXLSX)
	e.split(contract.SourceRef{SourceKey: "uploads/tok.csv", Token: token}, "text", id)
	rep := e.completed(id, 30*time.Second)
	if rep.Token != token || rep.File != "reports/"+token+".zip" || rep.Count != 3 {
		t.Fatalf("report: %+v", rep)
	}
	if st := e.status(token); st.QueueName != e.queue(token) || st.DoneCount != 3 {
		t.Fatalf("status: %+v", st)
	}
}

func TestSplitLargeByReference(t *testing.T) {
	t.Parallel()
	const rows = 20000
	e := newEnvWith(t, envOptions{workers: 16})
	var b strings.Builder
	b.WriteString("個別識別番号,保険者名,年度\n")
	for i := 1; i <= rows; i++ {
		fmt.Fprintf(&b, "L%05d,保険者%d,%d\n", i, i%97, 2000+i%30)
	}
	if err := e.store.Put(context.Background(), "uploads/large.csv", strings.NewReader(b.String())); err != nil {
		t.Fatal(err)
	}
	id := e.newReport(models.ReportTypeXLSX)
	e.split(contract.SourceRef{SourceKey: "uploads/large.csv"}, "csv", id)
	rep := e.completed(id, 90*time.Second)
	if rep.Count != rows {
		t.Fatalf("report count %d, want %d", rep.Count, rows)
	}
	st := e.status(rep.Token)
	if st.TotalCount != rows || st.DoneCount != rows || st.FailedCount != 0 {
		t.Fatalf("status: %+v", st)
	}
	files := e.readZip(rep.File)
	m := manifestRows(t, files) // fails on a duplicate row
	if len(m) != rows || len(files) != rows+1 {
		t.Fatalf("manifest %d rows, zip %d entries", len(m), len(files))
	}
	for i := 1; i <= rows; i++ {
		name := fmt.Sprintf("row-%06d-L%05d.csv", i, i)
		if m[i] != [3]string{name, "done", ""} {
			t.Fatalf("manifest row %d: %q", i, m[i])
		}
		want := fmt.Sprintf("\ufeff個別識別番号,保険者名,年度\r\nL%05d,保険者%d,%d\r\n", i, i%97, 2000+i%30)
		if got := string(files[name]); got != want {
			t.Fatalf("%s: %q, want %q", name, got, want)
		}
	}
	e.waitStopped(1, 60*time.Second) // the worker is stopped after the row files are deleted
	if left := e.rowFiles(rep.Token); len(left) != 0 {
		t.Errorf("%d row files left", len(left))
	}
}
