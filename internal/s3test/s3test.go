// Package s3test gives tests a storage.S3 on the real aws-sdk-go-v2 client,
// talking to an in-process S3-compatible server (gofakes3).
package s3test

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/pallarel/pallarel/storage"
)

// NewStore starts a fake S3 server for the test, creates bucket on it and
// returns the store on it with its client (path style, static credentials).
func NewStore(tb testing.TB, bucket string) (*storage.S3, *s3.Client) {
	tb.Helper()
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	tb.Cleanup(srv.Close)
	client := s3.New(s3.Options{
		Region:       "ap-northeast-1",
		BaseEndpoint: aws.String(srv.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	})
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		tb.Fatalf("create bucket: %v", err)
	}
	store, err := storage.NewS3(storage.S3Config{Bucket: bucket}, client)
	if err != nil {
		tb.Fatal(err)
	}
	return store, client
}
