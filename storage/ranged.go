package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Ranger is a Store that reads part of an object without reading what comes
// before it: Local seeks, S3 sends a ranged GET. It lets a row job read its
// row from the stored upload (jobs' row references).
type Ranger interface {
	// OpenRange returns the n bytes of key from offset off (fewer when the
	// object ends first); ErrNotExist when missing.
	OpenRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)
}

// ReaderAtOpener is a Store whose objects can be held open and read at
// any offset, one system call a read: Local. A row job reads one row of
// the upload each, and opening the file for each cost more than the row.
type ReaderAtOpener interface {
	// OpenReaderAt opens key for ReadAt, which is safe for concurrent
	// use; ErrNotExist when missing.
	OpenReaderAt(ctx context.Context, key string) (ReadAtCloser, error)
}

// ReadAtCloser is an open object read at offsets.
type ReadAtCloser interface {
	io.ReaderAt
	io.Closer
}

var (
	_ Ranger         = (*Local)(nil)
	_ Ranger         = (*S3)(nil)
	_ ReaderAtOpener = (*Local)(nil)
)

// OpenReaderAt implements ReaderAtOpener.
func (l *Local) OpenReaderAt(ctx context.Context, key string) (ReadAtCloser, error) {
	rc, err := l.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	return rc.(ReadAtCloser), nil // Open returns the *os.File
}

// ReadAtExactly reads the n bytes of r from off; ErrShortRange (wrapped)
// when r ends first.
func ReadAtExactly(r io.ReaderAt, key string, off, n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := r.ReadAt(b, off); err != nil {
		if errors.Is(err, io.EOF) {
			err = ErrShortRange
		}
		return nil, fmt.Errorf("read %s [%d, +%d): %w", key, off, n, err)
	}
	return b, nil
}

// ErrShortRange is returned (wrapped) by ReadRange when the object ends
// before the range does: it is not the object the range was taken from.
var ErrShortRange = errors.New("object shorter than the range")

// ReadRange reads exactly the n bytes of key from off, through OpenRange
// when s is a Ranger, else by reading from the start.
func ReadRange(ctx context.Context, s Store, key string, off, n int64) ([]byte, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("read %s [%d, +%d): negative range", key, off, n)
	}
	var rc io.ReadCloser
	var err error
	if r, ok := s.(Ranger); ok {
		rc, err = r.OpenRange(ctx, key, off, n)
	} else if rc, err = s.Open(ctx, key); err == nil {
		if _, err = io.CopyN(io.Discard, rc, off); err != nil {
			rc.Close()
			if errors.Is(err, io.EOF) {
				err = ErrShortRange
			}
			return nil, fmt.Errorf("read %s [%d, +%d): %w", key, off, n, err)
		}
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(rc, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = ErrShortRange
		}
		return nil, fmt.Errorf("read %s [%d, +%d): %w", key, off, n, err)
	}
	return b, nil
}

// OpenRange implements Ranger.
func (l *Local) OpenRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := l.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	f := rc.(io.ReadSeekCloser) // Open returns the *os.File
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s at %d: %w", key, off, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, n), f}, nil
}
