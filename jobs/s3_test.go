package jobs_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/storage"
)

// newFakeS3Store is storage.S3 with the real SDK client on an in-process
// S3 server (path style, static credentials).
func newFakeS3Store(t *testing.T) (*storage.S3, *s3.Client) {
	t.Helper()
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	client := s3.New(s3.Options{
		Region:       "ap-northeast-1",
		BaseEndpoint: aws.String(srv.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	})
	const bucket = "pallarel-jobs-test"
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	store, err := storage.NewS3(storage.S3Config{Bucket: bucket}, client)
	if err != nil {
		t.Fatal(err)
	}
	return store, client
}

func TestPipelineS3(t *testing.T) {
	t.Parallel()
	store, client := newFakeS3Store(t)
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
	e.split(jobs.SourceRef{SourceKey: "uploads/s3.csv"}, "text", id)
	rep := e.completed(id, 30*time.Second)
	if rep.File != jobs.ResultKey(rep.Token) || rep.Count != rows {
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
