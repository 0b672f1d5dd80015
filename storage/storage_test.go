package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

const testBucket = "pallarel-test"

// fakeS3 is an in-process S3 server with a real SDK client pointed at it.
type fakeS3 struct {
	url    string
	client *s3.Client
}

func newFakeS3(t testing.TB) fakeS3 {
	t.Helper()
	faker := gofakes3.New(s3mem.New())
	srv := httptest.NewServer(faker.Server())
	t.Cleanup(srv.Close)
	client := s3.New(s3.Options{
		Region:       "ap-northeast-1",
		BaseEndpoint: aws.String(srv.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	})
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(testBucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return fakeS3{url: srv.URL, client: client}
}

func newTestS3(t testing.TB, prefix string) *S3 {
	t.Helper()
	f := newFakeS3(t)
	s, err := NewS3(S3Config{Bucket: testBucket, Prefix: prefix}, f.client)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newTestLocal(t testing.TB) *Local {
	t.Helper()
	l, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// stores lists every adapter the conformance suite runs against.
func stores() map[string]func(t *testing.T) Store {
	return map[string]func(t *testing.T) Store{
		"local":     func(t *testing.T) Store { return newTestLocal(t) },
		"s3":        func(t *testing.T) Store { return newTestS3(t, "") },
		"s3-prefix": func(t *testing.T) Store { return newTestS3(t, "/app/pallarel/") },
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	for name, mk := range stores() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			runConformance(t, mk)
		})
	}
}

func put(t *testing.T, s Store, key, body string) {
	t.Helper()
	if err := s.Put(context.Background(), key, strings.NewReader(body)); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func read(t *testing.T, s Store, key string) string {
	t.Helper()
	rc, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("open %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return string(b)
}

func keys(infos []Info) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.Key
	}
	return out
}

func runConformance(t *testing.T, mk func(t *testing.T) Store) {
	ctx := context.Background()

	t.Run("put open stat", func(t *testing.T) {
		t.Parallel()
		s := mk(t)
		before := time.Now().Add(-time.Minute)
		put(t, s, "reports/a.zip", "hello")
		if got := read(t, s, "reports/a.zip"); got != "hello" {
			t.Fatalf("read = %q", got)
		}
		in, err := s.Stat(ctx, "reports/a.zip")
		if err != nil {
			t.Fatal(err)
		}
		if in.Key != "reports/a.zip" || in.Size != 5 {
			t.Fatalf("stat = %+v", in)
		}
		if in.ModTime.Before(before) || in.ModTime.After(time.Now().Add(time.Minute)) {
			t.Fatalf("mod time %v not near now", in.ModTime)
		}
		// Overwrite replaces the whole content.
		put(t, s, "reports/a.zip", "hi")
		if got := read(t, s, "reports/a.zip"); got != "hi" {
			t.Fatalf("after overwrite read = %q", got)
		}
		// Empty object and Japanese key.
		put(t, s, "日本語/空.txt", "")
		if got := read(t, s, "日本語/空.txt"); got != "" {
			t.Fatalf("empty read = %q", got)
		}
		if in, err := s.Stat(ctx, "日本語/空.txt"); err != nil || in.Size != 0 {
			t.Fatalf("empty stat = %+v, %v", in, err)
		}
	})

	t.Run("missing keys", func(t *testing.T) {
		t.Parallel()
		s := mk(t)
		put(t, s, "dir/file", "x")
		for _, key := range []string{"nope", "dir/nope", "dir", "dir/file/below", "other/deep/key"} {
			if _, err := s.Open(ctx, key); !errors.Is(err, ErrNotExist) {
				t.Errorf("Open(%q) = %v, want ErrNotExist", key, err)
			}
			if _, err := s.Stat(ctx, key); !errors.Is(err, ErrNotExist) {
				t.Errorf("Stat(%q) = %v, want ErrNotExist", key, err)
			}
			if err := s.Delete(ctx, key); err != nil {
				t.Errorf("Delete(%q) = %v, want nil", key, err)
			}
		}
		if got := read(t, s, "dir/file"); got != "x" {
			t.Fatalf("dir/file = %q after deleting neighbours", got)
		}
	})

	t.Run("bad keys", func(t *testing.T) {
		t.Parallel()
		s := mk(t)
		bad := []string{"", "/abs", "../up", "a/../b", "a/..", "a\\b", "a\x00b", "a//b", "./a", "a/", "."}
		for _, key := range bad {
			if err := s.Put(ctx, key, strings.NewReader("x")); !errors.Is(err, ErrBadKey) {
				t.Errorf("Put(%q) = %v, want ErrBadKey", key, err)
			}
			if _, err := s.Open(ctx, key); !errors.Is(err, ErrBadKey) {
				t.Errorf("Open(%q) = %v, want ErrBadKey", key, err)
			}
			if _, err := s.Stat(ctx, key); !errors.Is(err, ErrBadKey) {
				t.Errorf("Stat(%q) = %v, want ErrBadKey", key, err)
			}
			if err := s.Delete(ctx, key); !errors.Is(err, ErrBadKey) {
				t.Errorf("Delete(%q) = %v, want ErrBadKey", key, err)
			}
			if _, err := s.URL(ctx, key, time.Minute); !errors.Is(err, ErrBadKey) {
				t.Errorf("URL(%q) = %v, want ErrBadKey", key, err)
			}
		}
		for _, prefix := range []string{"/abs", "../", "a/../", "a\\", "a\x00"} {
			if _, err := s.List(ctx, prefix); !errors.Is(err, ErrBadKey) {
				t.Errorf("List(%q) = %v, want ErrBadKey", prefix, err)
			}
			if err := s.DeletePrefix(ctx, prefix); !errors.Is(err, ErrBadKey) {
				t.Errorf("DeletePrefix(%q) = %v, want ErrBadKey", prefix, err)
			}
		}
		if err := s.DeletePrefix(ctx, ""); !errors.Is(err, ErrBadKey) {
			t.Errorf("DeletePrefix(\"\") = %v, want ErrBadKey", err)
		}
	})

	t.Run("list and delete prefix", func(t *testing.T) {
		t.Parallel()
		s := mk(t)
		all := []string{"a", "b/1", "b/2", "b/sub/3", "bb", "c/x"}
		// Put in reverse so sorting is List's work.
		for i := len(all) - 1; i >= 0; i-- {
			put(t, s, all[i], "content-"+all[i])
		}
		cases := map[string][]string{
			"":      all,
			"b":     {"b/1", "b/2", "b/sub/3", "bb"},
			"b/":    {"b/1", "b/2", "b/sub/3"},
			"b/s":   {"b/sub/3"},
			"zzz":   nil,
			"c/x":   {"c/x"},
			"nope/": nil,
		}
		for prefix, want := range cases {
			got, err := s.List(ctx, prefix)
			if err != nil {
				t.Fatalf("List(%q): %v", prefix, err)
			}
			if fmt.Sprint(keys(got)) != fmt.Sprint(want) {
				t.Errorf("List(%q) = %v, want %v", prefix, keys(got), want)
			}
			for _, in := range got {
				if in.Size != int64(len("content-"+in.Key)) {
					t.Errorf("List(%q) %s size %d", prefix, in.Key, in.Size)
				}
			}
		}
		if err := s.DeletePrefix(ctx, "b/"); err != nil {
			t.Fatal(err)
		}
		got, err := s.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(keys(got)) != fmt.Sprint([]string{"a", "bb", "c/x"}) {
			t.Fatalf("after DeletePrefix(b/) = %v", keys(got))
		}
		if err := s.DeletePrefix(ctx, "nothing-here/"); err != nil {
			t.Fatalf("DeletePrefix of nothing: %v", err)
		}
		if err := s.Delete(ctx, "bb"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, "bb"); !errors.Is(err, ErrNotExist) {
			t.Fatalf("Stat after Delete = %v", err)
		}
	})

	t.Run("multipart over 5 MiB", func(t *testing.T) {
		t.Parallel()
		s := mk(t)
		body := make([]byte, 11<<20+12345) // three 5 MiB parts
		if _, err := rand.Read(body); err != nil {
			t.Fatal(err)
		}
		// A plain io.Reader (no Seek, no Len) forces the streaming path.
		if err := s.Put(ctx, "big/blob.bin", io.MultiReader(bytes.NewReader(body))); err != nil {
			t.Fatal(err)
		}
		in, err := s.Stat(ctx, "big/blob.bin")
		if err != nil || in.Size != int64(len(body)) {
			t.Fatalf("stat = %+v, %v; want size %d", in, err, len(body))
		}
		if got := read(t, s, "big/blob.bin"); got != string(body) {
			t.Fatalf("content differs (len %d vs %d)", len(got), len(body))
		}
	})

	t.Run("failed put leaves nothing", func(t *testing.T) {
		t.Parallel()
		s := mk(t)
		boom := errors.New("reader broke")
		for _, size := range []int{100, 7 << 20} { // single part and multipart
			key := fmt.Sprintf("fail/%d", size)
			r := io.MultiReader(bytes.NewReader(make([]byte, size)), errReader{boom})
			if err := s.Put(ctx, key, r); !errors.Is(err, boom) {
				t.Fatalf("Put(%s) = %v, want %v", key, err, boom)
			}
			if _, err := s.Stat(ctx, key); !errors.Is(err, ErrNotExist) {
				t.Fatalf("Stat(%s) after failed put = %v, want ErrNotExist", key, err)
			}
		}
		// An existing object survives a failed overwrite.
		put(t, s, "fail/keep", "old")
		if err := s.Put(ctx, "fail/keep", io.MultiReader(strings.NewReader("new"), errReader{boom})); err == nil {
			t.Fatal("want error")
		}
		if got := read(t, s, "fail/keep"); got != "old" {
			t.Fatalf("after failed overwrite = %q", got)
		}
		if got, err := s.List(ctx, "fail/"); err != nil || fmt.Sprint(keys(got)) != "[fail/keep]" {
			t.Fatalf("List(fail/) = %v, %v", keys(got), err)
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		t.Parallel()
		s := mk(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.Put(cctx, "cancel/x", strings.NewReader("x")); !errors.Is(err, context.Canceled) {
			t.Fatalf("Put with cancelled ctx = %v", err)
		}
		if _, err := s.Stat(ctx, "cancel/x"); !errors.Is(err, ErrNotExist) {
			t.Fatalf("Stat = %v", err)
		}
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestLocalURL(t *testing.T) {
	t.Parallel()
	l := newTestLocal(t)
	put(t, l, "a", "x")
	u, err := l.URL(context.Background(), "a", time.Minute)
	if u != "" || !errors.Is(err, ErrNoURL) {
		t.Fatalf("URL = %q, %v; want ErrNoURL", u, err)
	}
}

func TestLocalLayout(t *testing.T) {
	t.Parallel()
	l := newTestLocal(t)
	put(t, l, "reports/x/y.zip", "zip")
	p, err := l.Path("reports/x/y.zip")
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(l.Root, "reports", "x", "y.zip") {
		t.Fatalf("Path = %s", p)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "zip" {
		t.Fatalf("file = %q, %v", b, err)
	}
	// Delete prunes the now-empty directories but keeps Root.
	if err := l.Delete(context.Background(), "reports/x/y.zip"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.Root, "reports")); !os.IsNotExist(err) {
		t.Fatalf("reports dir still there: %v", err)
	}
	if _, err := os.Stat(l.Root); err != nil {
		t.Fatalf("root gone: %v", err)
	}
	// Temp files of an in-flight Put are invisible to List.
	if err := os.WriteFile(filepath.Join(l.Root, tempPrefix+"123"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := l.List(context.Background(), ""); err != nil || len(got) != 0 {
		t.Fatalf("List = %v, %v", keys(got), err)
	}
	if _, err := NewLocal(""); err == nil {
		t.Fatal("NewLocal(\"\") want error")
	}
}

func TestS3PresignedURL(t *testing.T) {
	t.Parallel()
	s := newTestS3(t, "pre")
	put(t, s, "reports/tok.zip", "zip-bytes")
	u, err := s.URL(context.Background(), "reports/tok.zip", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(u, "/"+testBucket+"/pre/reports/tok.zip") || !strings.Contains(u, "X-Amz-Expires=300") {
		t.Fatalf("url = %s", u)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(b) != "zip-bytes" {
		t.Fatalf("GET presigned = %d %q", resp.StatusCode, b)
	}
	// Default TTL applies for 0.
	u, err = s.URL(context.Background(), "reports/tok.zip", 0)
	if err != nil || !strings.Contains(u, "X-Amz-Expires=900") {
		t.Fatalf("url = %s, %v", u, err)
	}
}

// TestS3FailedMultipartAborted: the uploader aborts a failed multipart
// upload, so neither an object nor orphaned parts remain.
func TestS3FailedMultipartAborted(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	s, err := NewS3(S3Config{Bucket: testBucket}, f.client)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	boom := errors.New("source went away")
	r := io.MultiReader(bytes.NewReader(make([]byte, 12<<20)), errReader{boom})
	if err := s.Put(ctx, "reports/partial.zip", r); !errors.Is(err, boom) {
		t.Fatalf("Put = %v", err)
	}
	_, err = f.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("reports/partial.zip")})
	if !errors.Is(mapS3NotFound(err), ErrNotExist) {
		t.Fatalf("HeadObject after failed put = %v, want not found", err)
	}
	ups, err := f.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(testBucket)})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups.Uploads) != 0 {
		t.Fatalf("%d multipart uploads left open", len(ups.Uploads))
	}
	// The fake does track open uploads, so the check above means something.
	if _, err := f.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String("open")}); err != nil {
		t.Fatal(err)
	}
	ups, err = f.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(testBucket)})
	if err != nil || len(ups.Uploads) != 1 {
		t.Fatalf("open uploads = %v, %v; want 1", ups, err)
	}
}

func TestS3PrefixIsolation(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	a, err := NewS3(S3Config{Bucket: testBucket, Prefix: "a"}, f.client)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewS3(S3Config{Bucket: testBucket, Prefix: "b/"}, f.client)
	if err != nil {
		t.Fatal(err)
	}
	put(t, a, "k", "from a")
	put(t, b, "k", "from b")
	if got := read(t, a, "k"); got != "from a" {
		t.Fatalf("a/k = %q", got)
	}
	if err := b.DeletePrefix(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, a, "k"); got != "from a" {
		t.Fatalf("a/k after b delete = %q", got)
	}
	// The raw object key carries the prefix.
	if _, err := f.client.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("a/k")}); err != nil {
		t.Fatalf("head a/k: %v", err)
	}
}

func TestS3DeletePrefixManyObjects(t *testing.T) {
	t.Parallel()
	s := newTestS3(t, "")
	for i := range 1005 { // more than one DeleteObjects batch
		put(t, s, fmt.Sprintf("many/%04d", i), "x")
	}
	put(t, s, "keep", "x")
	if err := s.DeletePrefix(context.Background(), "many/"); err != nil {
		t.Fatal(err)
	}
	got, err := s.List(context.Background(), "")
	if err != nil || fmt.Sprint(keys(got)) != "[keep]" {
		t.Fatalf("List = %v, %v", len(got), err)
	}
}

func TestNewS3Validation(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	for name, tc := range map[string]struct {
		cfg    S3Config
		client *s3.Client
	}{
		"no bucket":       {S3Config{}, f.client},
		"nil client":      {S3Config{Bucket: "b"}, nil},
		"small part size": {S3Config{Bucket: "b", PartSize: 1024}, f.client},
		"bad prefix":      {S3Config{Bucket: "b", Prefix: "a/../b"}, f.client},
	} {
		if _, err := NewS3(tc.cfg, tc.client); err == nil {
			t.Errorf("%s: want error", name)
		}
	}
}

// TestNewS3Client checks the default chain (credentials from the
// environment) and the endpoint override, end to end against the fake.
func TestNewS3Client(t *testing.T) {
	f := newFakeS3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	ctx := context.Background()

	client, err := NewS3Client(ctx, S3ClientConfig{Endpoint: f.url, UsePathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := client.Options().Region; got != DefaultRegion {
		t.Fatalf("region = %q, want %q", got, DefaultRegion)
	}
	s, err := NewS3(S3Config{Bucket: testBucket}, client)
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "via-env", "ok")
	if got := read(t, s, "via-env"); got != "ok" {
		t.Fatalf("read = %q", got)
	}

	client, err = NewS3Client(ctx, S3ClientConfig{Region: "us-west-2"})
	if err != nil {
		t.Fatal(err)
	}
	if client.Options().Region != "us-west-2" || client.Options().BaseEndpoint != nil {
		t.Fatalf("options = %q %v", client.Options().Region, client.Options().BaseEndpoint)
	}

	// The SDK resolves AWS_ENDPOINT_URL_S3 itself when no Endpoint is given.
	t.Setenv("AWS_ENDPOINT_URL_S3", f.url)
	client, err = NewS3Client(ctx, S3ClientConfig{UsePathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err = NewS3(S3Config{Bucket: testBucket}, client)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, s, "via-env"); got != "ok" {
		t.Fatalf("read via AWS_ENDPOINT_URL_S3 = %q", got)
	}
}

func TestLocalNoSyncPrefixesStillAtomic(t *testing.T) {
	l, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l.NoSyncPrefixes = []string{"rows/"}
	ctx := context.Background()
	if err := l.Put(ctx, "rows/t/a.txt", strings.NewReader("row")); err != nil {
		t.Fatal(err)
	}
	if l.durable("rows/t/a.txt") || !l.durable("reports/t.zip") {
		t.Fatal("prefix rule")
	}
	rc, err := l.Open(ctx, "rows/t/a.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	if string(b) != "row" {
		t.Fatalf("%q", b)
	}
	entries, _ := os.ReadDir(filepath.Join(l.Root, "rows", "t"))
	if len(entries) != 1 {
		t.Fatalf("temp files left: %v", entries)
	}
}

// OpenAppend creates a new object only, and each write is readable at once
// at the offsets the writer counted.
func TestLocalOpenAppend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newTestLocal(t)
	w, err := l.OpenAppend(ctx, "rows/t/seg.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := l.OpenAppend(ctx, "rows/t/seg.bin"); err == nil {
		t.Fatal("second OpenAppend of one key succeeded; want an error")
	}
	if _, err := l.OpenAppend(ctx, "../escape"); !errors.Is(err, ErrBadKey) {
		t.Fatalf("OpenAppend(../escape) = %v, want ErrBadKey", err)
	}
	for i, part := range []string{"first,", "second,", "third"} {
		if _, err := io.WriteString(w, part); err != nil {
			t.Fatal(err)
		}
		rc, err := l.Open(ctx, "rows/t/seg.bin")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if want := strings.Join([]string{"first,", "second,", "third"}[:i+1], ""); string(b) != want {
			t.Fatalf("after write %d: %q, want %q", i+1, b, want)
		}
	}
	if got, err := l.List(ctx, "rows/"); err != nil || len(got) != 1 || got[0].Size != int64(len("first,second,third")) {
		t.Fatalf("List = %+v, %v", got, err)
	}
}
