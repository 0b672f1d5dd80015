package storage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// DefaultRegion is the AWS region the Rails app defaults to.
const DefaultRegion = "ap-northeast-1"

// DefaultURLTTL is how long a presigned URL lives when URL is given ttl 0.
const DefaultURLTTL = 15 * time.Minute

// S3Config says where S3 objects live.
type S3Config struct {
	// Bucket is the bucket name (REPORT_S3_BUCKET_NAME). Required.
	Bucket string
	// Prefix is prepended to every key ("" or e.g. "pallarel/"); a missing
	// trailing slash is added.
	Prefix string
	// PartSize is the multipart upload part size in bytes. Bodies larger
	// than one part go up as multipart. Defaults to 5 MiB (S3's minimum).
	PartSize int64
	// DownloadName names the file a browser saves for key, stored as the
	// object's Content-Disposition and asked for in its presigned URLs.
	// Empty (or nil DownloadName) leaves the object inline. Defaults to
	// the key's base name for .zip keys.
	DownloadName func(key string) string
}

// AbortTimeout bounds the AbortMultipartUpload of a failed upload. It runs
// on a context that outlives the caller's, so a shutdown that cancelled
// the upload still removes its parts (S3 bills them until aborted).
const AbortTimeout = 30 * time.Second

// contentTypes are the Content-Types of the objects Pallarel writes, by
// extension; the image has no /etc/mime.types.
var contentTypes = map[string]string{
	".zip":  "application/zip",
	".csv":  "text/csv; charset=utf-8",
	".txt":  "text/plain; charset=utf-8",
	".pdf":  "application/pdf",
	".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

// ContentType is the Content-Type S3 stores key with ("" for unknown).
func ContentType(key string) string { return contentTypes[strings.ToLower(path.Ext(key))] }

func defaultDownloadName(key string) string {
	if strings.EqualFold(path.Ext(key), ".zip") {
		return path.Base(key)
	}
	return ""
}

// contentDisposition is an attachment header for name ("" when name is).
func contentDisposition(name string) string {
	if name == "" {
		return ""
	}
	return mime.FormatMediaType("attachment", map[string]string{"filename": name})
}

// S3 stores objects in an S3 bucket.
type S3 struct {
	cfg      S3Config
	client   *s3.Client
	uploader *manager.Uploader
	presign  *s3.PresignClient
}

var _ Store = (*S3)(nil)

// NewS3 returns an S3 store using client.
func NewS3(cfg S3Config, client *s3.Client) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("new s3 store: empty bucket")
	}
	if client == nil {
		return nil, errors.New("new s3 store: nil client")
	}
	cfg.PartSize = cmp.Or(cfg.PartSize, manager.MinUploadPartSize)
	if cfg.PartSize < manager.MinUploadPartSize {
		return nil, fmt.Errorf("new s3 store: part size %d below S3 minimum %d", cfg.PartSize, manager.MinUploadPartSize)
	}
	if cfg.Prefix = strings.Trim(cfg.Prefix, "/"); cfg.Prefix != "" {
		if err := validPath(cfg.Prefix); err != nil {
			return nil, fmt.Errorf("new s3 store: prefix: %w", err)
		}
		cfg.Prefix += "/"
	}
	if cfg.DownloadName == nil {
		cfg.DownloadName = defaultDownloadName
	}
	return &S3{
		cfg:    cfg,
		client: client,
		uploader: manager.NewUploader(client, func(u *manager.Uploader) {
			u.PartSize = cfg.PartSize
			// Put aborts a failed multipart upload itself, on a context
			// that survives the caller's cancellation.
			u.LeavePartsOnError = true
			// The uploader computes checksums for multipart whatever the
			// client says unless told; follow the client.
			if c := client.Options().RequestChecksumCalculation; c != aws.RequestChecksumCalculationUnset {
				u.RequestChecksumCalculation = c
			}
		}),
		presign: s3.NewPresignClient(client),
	}, nil
}

// S3ClientConfig says how to reach S3.
type S3ClientConfig struct {
	// Region defaults to ap-northeast-1 when neither this nor the AWS config
	// chain names one.
	Region string
	// Endpoint overrides the S3 endpoint (MinIO, a fake). Empty keeps the
	// SDK's own resolution, which also honours AWS_ENDPOINT_URL_S3.
	Endpoint string
	// UsePathStyle addresses buckets as host/bucket/key (needed by most
	// S3-compatible servers).
	UsePathStyle bool
	// Checksums is when request checksums are computed and response
	// checksums validated: ChecksumsWhenSupported (AWS's default: CRC32
	// on every upload, sent over HTTPS as an aws-chunked trailer) or
	// ChecksumsWhenRequired (only where the API requires one). Empty
	// keeps AWS_REQUEST_CHECKSUM_CALCULATION / AWS_RESPONSE_CHECKSUM_VALIDATION
	// when set, else means when_required with a custom endpoint (several
	// S3-compatible stores reject aws-chunked trailers with
	// XAmzContentSHA256Mismatch) and when_supported on AWS.
	Checksums string
	// HTTPClient replaces the SDK's HTTP client (tests; a private CA can
	// also be given with AWS_CA_BUNDLE).
	HTTPClient *http.Client
}

// Checksum settings (S3ClientConfig.Checksums).
const (
	ChecksumsWhenSupported = "when_supported"
	ChecksumsWhenRequired  = "when_required"
)

// NewS3Client builds an S3 client from the default AWS config chain
// (environment, shared config files, IAM role), so it runs unchanged on AWS.
func NewS3Client(ctx context.Context, cfg S3ClientConfig) (*s3.Client, error) {
	var opts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load aws config: %w", err)
	}
	awsCfg.Region = cmp.Or(awsCfg.Region, DefaultRegion)
	if cfg.HTTPClient != nil {
		awsCfg.HTTPClient = cfg.HTTPClient
	}
	// LoadDefaultConfig fills in when_supported when nothing says
	// otherwise; only the environment tells whether someone chose it.
	env, err := config.NewEnvConfig()
	if err != nil {
		return nil, fmt.Errorf("load aws config: %w", err)
	}
	var checksumErr error
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = o.UsePathStyle || cfg.UsePathStyle
		mode := cfg.Checksums
		if mode == "" && o.BaseEndpoint != nil { // AWS_ENDPOINT_URL_S3 is resolved by now
			mode = ChecksumsWhenRequired
		}
		switch mode {
		case "":
		case ChecksumsWhenRequired:
			if cfg.Checksums != "" || env.RequestChecksumCalculation == aws.RequestChecksumCalculationUnset {
				o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			}
			if cfg.Checksums != "" || env.ResponseChecksumValidation == aws.ResponseChecksumValidationUnset {
				o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
			}
		case ChecksumsWhenSupported:
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenSupported
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenSupported
		default:
			checksumErr = fmt.Errorf("s3 checksums %q: want %s or %s", mode, ChecksumsWhenSupported, ChecksumsWhenRequired)
		}
	})
	if checksumErr != nil {
		return nil, checksumErr
	}
	return client, nil
}

func (s *S3) objectKey(key string) string { return s.cfg.Prefix + key }

// Put implements Store. Bodies above PartSize go up as a multipart upload,
// aborted on failure (even when ctx was cancelled), so no partial object
// and no billed parts are left. The object gets its Content-Type and, for
// downloads, a Content-Disposition.
func (s *S3) Put(ctx context.Context, key string, r io.Reader) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	in := &s3.PutObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(s.objectKey(key)),
		Body:   r,
	}
	if ct := ContentType(key); ct != "" {
		in.ContentType = aws.String(ct)
	}
	if cd := contentDisposition(s.cfg.DownloadName(key)); cd != "" {
		in.ContentDisposition = aws.String(cd)
	}
	_, err := s.uploader.Upload(ctx, in)
	if err == nil {
		return nil
	}
	var mf manager.MultiUploadFailure
	if errors.As(err, &mf) && mf.UploadID() != "" {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), AbortTimeout)
		defer cancel()
		_, aerr := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket:   in.Bucket,
			Key:      in.Key,
			UploadId: aws.String(mf.UploadID()),
		})
		if aerr != nil {
			err = fmt.Errorf("%w (and abort of upload %s failed, parts remain: %w)", err, mf.UploadID(), aerr)
		}
	}
	return fmt.Errorf("put s3://%s/%s: %w", s.cfg.Bucket, s.objectKey(key), err)
}

// Open implements Store.
func (s *S3) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(s.objectKey(key)),
	})
	if err != nil {
		return nil, fmt.Errorf("open s3://%s/%s: %w", s.cfg.Bucket, s.objectKey(key), mapS3NotFound(err))
	}
	return out.Body, nil
}

// OpenRange implements Ranger with a ranged GET (bytes=off-(off+n-1)).
func (s *S3) OpenRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	if n == 0 {
		return io.NopCloser(strings.NewReader("")), nil
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(s.objectKey(key)),
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1)),
	})
	if err != nil {
		return nil, fmt.Errorf("open s3://%s/%s [%d, +%d): %w", s.cfg.Bucket, s.objectKey(key), off, n, mapS3NotFound(err))
	}
	return out.Body, nil
}

// Stat implements Store.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(s.objectKey(key)),
	})
	if err != nil {
		return Info{}, fmt.Errorf("stat s3://%s/%s: %w", s.cfg.Bucket, s.objectKey(key), mapS3NotFound(err))
	}
	return Info{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}, nil
}

// mapS3NotFound adds ErrNotExist to S3's several ways of saying 404
// (NoSuchKey on GET, a bare 404 "NotFound" on HEAD).
func mapS3NotFound(err error) error {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	var re *awshttp.ResponseError
	if errors.As(err, &nsk) || errors.As(err, &nf) ||
		(errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound) {
		return fmt.Errorf("%w: %w", ErrNotExist, err)
	}
	return err
}

// List implements Store.
func (s *S3) List(ctx context.Context, prefix string) ([]Info, error) {
	if err := validPrefix(prefix); err != nil {
		return nil, err
	}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.cfg.Bucket),
		Prefix: aws.String(s.objectKey(prefix)),
	})
	var out []Info
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", s.cfg.Bucket, s.objectKey(prefix), err)
		}
		for _, o := range page.Contents {
			out = append(out, Info{
				Key:     strings.TrimPrefix(aws.ToString(o.Key), s.cfg.Prefix),
				Size:    aws.ToInt64(o.Size),
				ModTime: aws.ToTime(o.LastModified),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Store. S3 answers 204 for missing keys too.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(s.objectKey(key)),
	})
	if err != nil {
		if errors.Is(mapS3NotFound(err), ErrNotExist) {
			return nil
		}
		return fmt.Errorf("delete s3://%s/%s: %w", s.cfg.Bucket, s.objectKey(key), err)
	}
	return nil
}

// deleteBatch is the most keys one DeleteObjects call accepts.
const deleteBatch = 1000

// DeletePrefix implements Store with batched DeleteObjects calls.
func (s *S3) DeletePrefix(ctx context.Context, prefix string) error {
	if prefix == "" {
		return fmt.Errorf("delete prefix: %w: empty prefix", ErrBadKey)
	}
	infos, err := s.List(ctx, prefix)
	if err != nil {
		return err
	}
	for start := 0; start < len(infos); start += deleteBatch {
		batch := infos[start:min(start+deleteBatch, len(infos))]
		ids := make([]types.ObjectIdentifier, len(batch))
		for i, in := range batch {
			ids[i] = types.ObjectIdentifier{Key: aws.String(s.objectKey(in.Key))}
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(s.cfg.Bucket),
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return fmt.Errorf("delete prefix s3://%s/%s: %w", s.cfg.Bucket, s.objectKey(prefix), err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return fmt.Errorf("delete prefix s3://%s/%s: %d errors, first %s: %s %s", s.cfg.Bucket,
				s.objectKey(prefix), len(out.Errors), aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message))
		}
	}
	return nil
}

// URL implements Store with a presigned GET valid for ttl (DefaultURLTTL when 0).
func (s *S3) URL(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := ValidKey(key); err != nil {
		return "", err
	}
	in := &s3.GetObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(s.objectKey(key)),
	}
	// Asked for in the URL too, so objects stored before the metadata
	// was set download under the same name as from local storage.
	if ct := ContentType(key); ct != "" {
		in.ResponseContentType = aws.String(ct)
	}
	if cd := contentDisposition(s.cfg.DownloadName(key)); cd != "" {
		in.ResponseContentDisposition = aws.String(cd)
	}
	req, err := s.presign.PresignGetObject(ctx, in, s3.WithPresignExpires(cmp.Or(ttl, DefaultURLTTL)))
	if err != nil {
		return "", fmt.Errorf("presign s3://%s/%s: %w", s.cfg.Bucket, s.objectKey(key), err)
	}
	return req.URL, nil
}
