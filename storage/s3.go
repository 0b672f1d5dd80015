package storage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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
	return &S3{
		cfg:    cfg,
		client: client,
		uploader: manager.NewUploader(client, func(u *manager.Uploader) {
			u.PartSize = cfg.PartSize
			u.LeavePartsOnError = false // abort multipart: no partial object
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
}

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
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = o.UsePathStyle || cfg.UsePathStyle
	}), nil
}

func (s *S3) objectKey(key string) string { return s.cfg.Prefix + key }

// Put implements Store. Bodies above PartSize go up as a multipart upload,
// which the uploader aborts on failure, so no partial object is left.
func (s *S3) Put(ctx context.Context, key string, r io.Reader) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	_, err := s.uploader.Upload(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(s.objectKey(key)),
		Body:   r,
	})
	if err != nil {
		return fmt.Errorf("put s3://%s/%s: %w", s.cfg.Bucket, s.objectKey(key), err)
	}
	return nil
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
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(s.objectKey(key)),
	}, s3.WithPresignExpires(cmp.Or(ttl, DefaultURLTTL)))
	if err != nil {
		return "", fmt.Errorf("presign s3://%s/%s: %w", s.cfg.Bucket, s.objectKey(key), err)
	}
	return req.URL, nil
}
