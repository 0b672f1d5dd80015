package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// strictS3 is an S3-compatible server that, like several real ones,
// rejects aws-chunked uploads with trailing checksums, which the SDK sends
// over HTTPS by default. It records every request.
type strictS3 struct {
	next http.Handler
	mu   sync.Mutex
	reqs []string // "METHOD path?query"
}

func (s *strictS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
	s.mu.Unlock()
	if strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") || r.Header.Get("X-Amz-Trailer") != "" ||
		strings.HasPrefix(r.Header.Get("X-Amz-Content-Sha256"), "STREAMING-") {
		// Read the body first: a refusal sent over an unread multi-MiB part
		// makes net/http drop the connection, and the client then sees a
		// send failure instead of the store's error.
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>XAmzContentSHA256Mismatch</Code>`+
			`<Message>The provided 'x-amz-content-sha256' header does not match what was computed.</Message></Error>`)
		return
	}
	s.next.ServeHTTP(w, r)
}

func (s *strictS3) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

// awsTestEnv gives the default credential chain static keys and nothing else.
func awsTestEnv(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "")
	t.Setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// TestS3CompatibleOverHTTPS: against an HTTPS S3-compatible store that
// rejects trailing checksums, the client built for a custom endpoint
// (checksums when required, on the client and the uploader) stores and
// reads single and multipart objects; the SDK's AWS default fails there.
func TestS3CompatibleOverHTTPS(t *testing.T) {
	awsTestEnv(t)
	strict := &strictS3{next: gofakes3.New(s3mem.New()).Server()}
	srv := httptest.NewTLSServer(strict)
	t.Cleanup(srv.Close)
	ctx := context.Background()

	client, err := NewS3Client(ctx, S3ClientConfig{Endpoint: srv.URL, UsePathStyle: true, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if o := client.Options(); o.RequestChecksumCalculation != aws.RequestChecksumCalculationWhenRequired ||
		o.ResponseChecksumValidation != aws.ResponseChecksumValidationWhenRequired {
		t.Fatalf("custom endpoint checksums = %v / %v, want when required", o.RequestChecksumCalculation, o.ResponseChecksumValidation)
	}
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(testBucket)}); err != nil {
		t.Fatal(err)
	}
	s, err := NewS3(S3Config{Bucket: testBucket}, client)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), (12<<20)/16) // three parts
	put(t, s, "reports/small.zip", "zip-bytes")
	if err := s.Put(ctx, "reports/big.zip", bytes.NewReader(big)); err != nil {
		t.Fatalf("multipart put: %v", err)
	}
	if got := read(t, s, "reports/small.zip"); got != "zip-bytes" {
		t.Fatalf("small = %q", got)
	}
	if got := read(t, s, "reports/big.zip"); got != string(big) {
		t.Fatalf("big: %d bytes back, want %d", len(got), len(big))
	}
	if !strings.Contains(fmt.Sprint(strict.requests()), "uploadId=") {
		t.Fatalf("no multipart upload seen: %v", strict.requests())
	}

	// What the SDK does by default on AWS is refused by this store: the
	// test above would fail without the custom-endpoint default.
	awsDefault, err := NewS3Client(ctx, S3ClientConfig{Endpoint: srv.URL, UsePathStyle: true, HTTPClient: srv.Client(), Checksums: ChecksumsWhenSupported})
	if err != nil {
		t.Fatal(err)
	}
	strictAWS, err := NewS3(S3Config{Bucket: testBucket}, awsDefault)
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range [][]byte{[]byte("x"), big} {
		if err := strictAWS.Put(ctx, "reports/refused.zip", bytes.NewReader(body)); err == nil || !strings.Contains(err.Error(), "XAmzContentSHA256Mismatch") {
			t.Fatalf("when_supported put of %d bytes = %v, want XAmzContentSHA256Mismatch", len(body), err)
		}
	}

	// The standard AWS variable is honoured over the custom-endpoint default.
	t.Setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_supported")
	c, err := NewS3Client(ctx, S3ClientConfig{Endpoint: srv.URL, UsePathStyle: true})
	if err != nil || c.Options().RequestChecksumCalculation != aws.RequestChecksumCalculationWhenSupported {
		t.Fatalf("AWS_REQUEST_CHECKSUM_CALCULATION ignored: %v, %v", c.Options().RequestChecksumCalculation, err)
	}
	if _, err := NewS3Client(ctx, S3ClientConfig{Checksums: "sometimes"}); err == nil {
		t.Fatal("bad checksums setting accepted")
	}
	// On AWS (no custom endpoint) the SDK's default stays.
	t.Setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "")
	c, err = NewS3Client(ctx, S3ClientConfig{})
	if err != nil || c.Options().RequestChecksumCalculation == aws.RequestChecksumCalculationWhenRequired {
		t.Fatalf("AWS client checksums = %v, %v", c.Options().RequestChecksumCalculation, err)
	}
}

// The report ZIP is stored as application/zip with a Content-Disposition
// naming it as the local download does, and its presigned URL says so too.
func TestS3ZipContentTypeAndName(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	s, err := NewS3(S3Config{Bucket: testBucket, DownloadName: func(key string) string {
		if tok, ok := strings.CutPrefix(key, "reports/"); ok {
			return "report-" + tok
		}
		return ""
	}}, f.client)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	put(t, s, "reports/tok.zip", "zip-bytes")
	head, err := f.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("reports/tok.zip")})
	if err != nil {
		t.Fatal(err)
	}
	const wantCD = `attachment; filename=report-tok.zip`
	if aws.ToString(head.ContentType) != "application/zip" || aws.ToString(head.ContentDisposition) != wantCD {
		t.Fatalf("stored as %q, %q", aws.ToString(head.ContentType), aws.ToString(head.ContentDisposition))
	}
	u, err := s.URL(ctx, "reports/tok.zip", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(u, "response-content-disposition=attachment") || !strings.Contains(u, "response-content-type=application%2Fzip") {
		t.Fatalf("url = %s", u)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/zip" || resp.Header.Get("Content-Disposition") != wantCD {
		t.Fatalf("GET = %d, %q, %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"))
	}
	// Row files stay inline, typed by extension; the default download name
	// is the base name.
	put(t, s, "rows/tok/1.txt", "row")
	head, _ = f.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("rows/tok/1.txt")})
	if aws.ToString(head.ContentType) != "text/plain; charset=utf-8" || aws.ToString(head.ContentDisposition) != "" {
		t.Fatalf("row stored as %q, %q", aws.ToString(head.ContentType), aws.ToString(head.ContentDisposition))
	}
	def, _ := NewS3(S3Config{Bucket: testBucket}, f.client)
	if u, _ := def.URL(ctx, "reports/x.zip", 0); !strings.Contains(u, "filename%3Dx.zip") {
		t.Fatalf("default name url = %s", u)
	}
}

// cancelReader serves n bytes, then cancels ctx and fails as a shutdown
// does mid-upload.
type cancelReader struct {
	n      int
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if c.n == 0 {
		c.cancel()
		return 0, context.Canceled
	}
	k := min(len(p), c.n)
	clear(p[:k])
	c.n -= k
	return k, nil
}

// A multipart upload cancelled by shutdown is still aborted: the abort
// runs on a context that survives the cancellation.
func TestS3CancelledMultipartAborted(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	s, err := NewS3(S3Config{Bucket: testBucket}, f.client)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	err = s.Put(ctx, "reports/cut.zip", &cancelReader{n: 11 << 20, cancel: cancel})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put = %v", err)
	}
	if strings.Contains(err.Error(), "abort") {
		t.Fatalf("abort failed: %v", err)
	}
	ups, err := f.client.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(testBucket)})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups.Uploads) != 0 {
		t.Fatalf("%d multipart uploads left open after a cancelled Put", len(ups.Uploads))
	}
}

var _ io.Reader = (*cancelReader)(nil)
