// Package storage keeps report inputs and outputs (uploaded CSVs, zipped
// reports) behind one small interface with two adapters: Local (a directory,
// for LOCAL_SAVE and development) and S3 (production, as the Rails app's
// REPORT_S3_BUCKET_NAME bucket).
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ErrNotExist is returned (wrapped) by Open and Stat when a key is missing.
var ErrNotExist = errors.New("object does not exist")

// ErrNoURL is returned by URL when the store cannot hand out links (Local).
var ErrNoURL = errors.New("store cannot make urls")

// ErrBadKey is returned (wrapped) for keys that are empty, absolute, contain
// ".." elements, backslashes or NUL bytes.
var ErrBadKey = errors.New("invalid storage key")

// Info describes one stored object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Store is a flat key → bytes store. Keys are slash-separated relative paths
// such as "reports/<token>.zip".
type Store interface {
	// Put streams r to key. The object becomes visible only once it is
	// complete: readers never see a partial object, and a failed Put leaves
	// nothing behind.
	Put(ctx context.Context, key string, r io.Reader) error
	// Open returns the object's content; ErrNotExist when missing.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat returns the object's Info; ErrNotExist when missing.
	Stat(ctx context.Context, key string) (Info, error)
	// List returns the objects whose key starts with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Info, error)
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// DeletePrefix removes every object whose key starts with prefix. An
	// empty prefix is refused (ErrBadKey) so a bug cannot wipe the store.
	DeletePrefix(ctx context.Context, prefix string) error
	// URL returns a time-limited download link (S3: presigned GET).
	// Local returns "" and ErrNoURL.
	URL(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// Appender is a Store that can grow an object in place: Local can, S3
// cannot. It lets many small writes share one object without creating one
// per write.
type Appender interface {
	// OpenAppend creates key, which must not exist, and returns a writer
	// that appends to it. What each Write wrote is visible to Open once
	// the Write returns, so readers must only read ranges they know are
	// complete; a crash can leave a partial tail. One writer per key.
	OpenAppend(ctx context.Context, key string) (io.WriteCloser, error)
}

// ValidKey reports whether key is a usable object key.
func ValidKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrBadKey)
	}
	if strings.HasSuffix(key, "/") {
		return fmt.Errorf("%w %q: ends with /", ErrBadKey, key)
	}
	return validPath(key)
}

// validPrefix checks a List/DeletePrefix prefix: like a key, but it may be
// empty and may end with "/".
func validPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return validPath(strings.TrimSuffix(prefix, "/"))
}

func validPath(p string) error {
	switch {
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("%w %q: absolute", ErrBadKey, p)
	case strings.ContainsRune(p, '\\'):
		return fmt.Errorf("%w %q: backslash", ErrBadKey, p)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%w %q: NUL byte", ErrBadKey, p)
	}
	for _, el := range strings.Split(p, "/") {
		switch el {
		case "":
			return fmt.Errorf("%w %q: empty path element", ErrBadKey, p)
		case ".", "..":
			return fmt.Errorf("%w %q: %q element", ErrBadKey, p, el)
		}
	}
	return nil
}
