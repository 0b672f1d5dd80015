package jobs_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/s3test"
	"github.com/pallarel/pallarel/models"
)

func TestPipelineS3(t *testing.T) {
	t.Parallel()
	store, client := s3test.NewStore(t, "pallarel-jobs-test")
	e := newEnvWith(t, envOptions{store: store})
	ctx := context.Background()

	var csv strings.Builder
	csv.WriteString("個別識別番号,保険者名,年度\r\n")
	const rows = 25
	for i := 1; i <= rows; i++ {
		fmt.Fprintf(&csv, "S-%04d,保険者%d,%d\r\n", i, i, 2000+i)
	}
	// The upload goes to S3 first and travels by reference.
	if err := store.Put(ctx, "uploads/s3.csv", strings.NewReader(csv.String())); err != nil {
		t.Fatal(err)
	}
	id := e.newReport(models.ReportTypeXLSX)
	e.split(contract.SourceRef{SourceKey: "uploads/s3.csv"}, "text", id)
	rep := e.completed(id, 30*time.Second)
	if rep.File != contract.ResultKey(rep.Token) || rep.Count != rows {
		t.Fatalf("report: %+v", rep)
	}
	// The object really is in the bucket under reports/<token>.zip.
	head, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("pallarel-jobs-test"), Key: aws.String("reports/" + rep.Token + ".zip")})
	if err != nil || aws.ToInt64(head.ContentLength) == 0 {
		t.Fatalf("head reports/%s.zip: %v", rep.Token, err)
	}
	files := e.readZip(rep.File)
	m := manifestRows(t, files)
	if len(m) != rows || len(files) != rows+1 {
		t.Fatalf("manifest %d rows, zip %d entries: %v", len(m), len(files), names(files))
	}
	for i := 1; i <= rows; i++ {
		want := fmt.Sprintf("row-%06d-S-%04d.txt", i, i)
		if m[i] != [3]string{want, "done", ""} {
			t.Errorf("manifest row %d: %q", i, m[i])
		}
		body := string(files[want])
		wantBody := fmt.Sprintf("個別識別番号: S-%04d\n保険者名: 保険者%d\n年度: %d\n", i, i, 2000+i)
		if body != wantBody {
			t.Errorf("%s: %q, want %q", want, body, wantBody)
		}
	}
	e.waitStopped(1, 20*time.Second) // the worker is stopped after the row files are deleted
	if left := e.rowFiles(rep.Token); len(left) != 0 {
		t.Errorf("row files left in S3: %v", left)
	}
	st := e.status(rep.Token)
	if st.TotalCount != rows || st.DoneCount != rows || st.FailedCount != 0 || st.FinalizedAt == nil {
		t.Errorf("status: %+v", st)
	}
}
