package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// tempPrefix marks in-flight Put files; List never shows them.
const tempPrefix = ".pallarel-tmp-"

// Local stores objects as files under Root. Put writes a temp file in the
// target directory and renames it, so readers see whole files only.
type Local struct {
	Root string
	// NoSyncPrefixes lists key prefixes whose files are not fsynced before
	// they are renamed into place: intermediate files that are cheap to
	// make again (the pipeline's per-row files), where one fsync per file
	// costs more than making the file. They are still written atomically.
	NoSyncPrefixes []string
}

var (
	_ Store    = (*Local)(nil)
	_ Appender = (*Local)(nil)
)

// NewLocal returns a Local store rooted at root (made absolute), creating the
// directory if needed.
func NewLocal(root string) (*Local, error) {
	if root == "" {
		return nil, errors.New("new local store: empty root")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("new local store %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("new local store: %w", err)
	}
	return &Local{Root: abs}, nil
}

// Path returns the file path that holds key.
func (l *Local) Path(key string) (string, error) {
	if err := ValidKey(key); err != nil {
		return "", err
	}
	return filepath.Join(l.Root, filepath.FromSlash(key)), nil
}

// Put implements Store.
func (l *Local) Put(ctx context.Context, key string, r io.Reader) error {
	path, err := l.Path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	// A temp file of our own naming, created with its final mode (no
	// chmod), renamed into place when complete.
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	tmp, err := os.OpenFile(filepath.Join(filepath.Dir(path), tempPrefix+hex.EncodeToString(nonce[:])),
		os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, ctxReader{ctx, r}); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if l.durable(key) {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("put %s: %w", key, err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	done = true
	return nil
}

// OpenAppend implements Appender: the file is created with O_EXCL and
// opened with O_APPEND. Its writes are not fsynced.
func (l *Local) OpenAppend(ctx context.Context, key string) (io.WriteCloser, error) {
	path, err := l.Path(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("open append %s: %w", key, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open append %s: %w", key, err)
	}
	return f, nil
}

// ctxReader stops a long copy when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Open implements Store.
func (l *Local) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	path, err := l.Path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", key, mapNotExist(err))
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	if st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", key, ErrNotExist)
	}
	return f, nil
}

// Stat implements Store.
func (l *Local) Stat(ctx context.Context, key string) (Info, error) {
	path, err := l.Path(key)
	if err != nil {
		return Info{}, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return Info{}, fmt.Errorf("stat %s: %w", key, mapNotExist(err))
	}
	if st.IsDir() {
		return Info{}, fmt.Errorf("stat %s: %w", key, ErrNotExist)
	}
	return Info{Key: key, Size: st.Size(), ModTime: st.ModTime()}, nil
}

func mapNotExist(err error) error {
	// ENOTDIR: a path element is a file, so the key cannot exist either.
	if errors.Is(err, fs.ErrNotExist) || isNotDir(err) {
		return fmt.Errorf("%w: %w", ErrNotExist, err)
	}
	return err
}

func isNotDir(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "not a directory")
}

// List implements Store.
func (l *Local) List(ctx context.Context, prefix string) ([]Info, error) {
	if err := validPrefix(prefix); err != nil {
		return nil, err
	}
	// Walk only the deepest directory the prefix names.
	dir := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		dir = prefix[:i]
	}
	start := filepath.Join(l.Root, filepath.FromSlash(dir))
	var out []Info
	err := filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == start && (errors.Is(err, fs.ErrNotExist) || isNotDir(err)) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		rel, err := filepath.Rel(l.Root, path)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		st, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted while walking
		}
		if err != nil {
			return err
		}
		out = append(out, Info{Key: key, Size: st.Size(), ModTime: st.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Store. Empty parent directories are removed too.
func (l *Local) Delete(ctx context.Context, key string) error {
	path, err := l.Path(key)
	if err != nil {
		return err
	}
	st, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || isNotDir(err) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if st.IsDir() {
		return nil // not an object
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	l.pruneDirs(filepath.Dir(path))
	return nil
}

// pruneDirs removes empty directories from dir up to (not including) Root.
// Failures are fine: a directory that is not empty stays.
func (l *Local) pruneDirs(dir string) {
	for dir != l.Root && strings.HasPrefix(dir, l.Root+string(filepath.Separator)) {
		if os.Remove(dir) != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}

// DeletePrefix implements Store.
func (l *Local) DeletePrefix(ctx context.Context, prefix string) error {
	if prefix == "" {
		return fmt.Errorf("delete prefix: %w: empty prefix", ErrBadKey)
	}
	infos, err := l.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, in := range infos {
		if err := l.Delete(ctx, in.Key); err != nil {
			return err
		}
	}
	return nil
}

// URL implements Store: local files have no URL.
func (l *Local) URL(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := ValidKey(key); err != nil {
		return "", err
	}
	return "", ErrNoURL
}

func (l *Local) durable(key string) bool {
	for _, p := range l.NoSyncPrefixes {
		if strings.HasPrefix(key, p) {
			return false
		}
	}
	return true
}
