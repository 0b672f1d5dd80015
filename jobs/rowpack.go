package jobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/pallarel/pallarel/storage"
)

// Row files are group-committed: the rows that finish while one commit is
// in flight are written as one storage object (a pack) and recorded in the
// ledger with one transaction, and only then do their jobs return and get
// acknowledged. One object per commit instead of one per row is what makes
// text rows cheap: creating a small file (or an S3 object) costs far more
// than rendering it. The finalizer reads each row back from its pack by the
// offset and size the ledger holds; the ZIP still has one file per row.
const (
	// packMaxRows and packMaxBytes bound one commit.
	packMaxRows  = 256
	packMaxBytes = 8 << 20
	// packSoloBytes: a row file at least this big is stored as an object of
	// its own, as before packs, and only its ledger entry is batched.
	packSoloBytes = 1 << 20
	// segmentMaxBytes: a segment this big is closed and a new one begun.
	segmentMaxBytes = 64 << 20
	// packCommitTimeout bounds one commit; it outlives the job that leads
	// it, so a shutdown does not cut short the rows of other jobs.
	packCommitTimeout = 60 * time.Second
)

// packedRow is one finished row waiting for its commit.
type packedRow struct {
	token string
	data  []byte // the row file, nil when it was stored on its own (res.File)
	res   RowResult

	done        chan struct{}
	isNew, last bool
	err         error
}

// rowPacker collects finished rows and commits them in groups. Whichever
// job finds no commit in flight leads the next one; the others wait.
type rowPacker struct {
	store  storage.Store
	ledger Ledger

	mu       sync.Mutex
	pending  []*packedRow
	flushing bool

	segMu sync.Mutex
	segs  map[string]*segment // by token
}

// segment is an object this process appends a token's packs to.
type segment struct {
	key  string
	w    io.WriteCloser
	size int64
}

// commit stores r's file and records its result, together with whatever
// other rows are ready, and reports how r was recorded.
func (pk *rowPacker) commit(ctx context.Context, r *packedRow) (isNew, last bool, err error) {
	r.done = make(chan struct{})
	pk.mu.Lock()
	pk.pending = append(pk.pending, r)
	lead := !pk.flushing
	pk.flushing = true
	pk.mu.Unlock()
	if lead {
		pk.lead(context.WithoutCancel(ctx), r)
	}
	select {
	case <-r.done:
		return r.isNew, r.last, r.err
	case <-ctx.Done():
		// The commit may still land; the job runs again and the ledger
		// keeps the first result.
		return false, false, ctx.Err()
	}
}

// lead runs commits until own is committed, then hands what is left to a
// goroutine so own's job can return.
func (pk *rowPacker) lead(ctx context.Context, own *packedRow) {
	for {
		pk.mu.Lock()
		batch := pk.take()
		if len(batch) == 0 {
			pk.flushing = false
			pk.mu.Unlock()
			return
		}
		pk.mu.Unlock()
		pk.flush(ctx, batch)
		if own != nil && closed(own.done) {
			go pk.lead(ctx, nil)
			return
		}
	}
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// take removes the next batch from pending; pk.mu is held.
func (pk *rowPacker) take() []*packedRow {
	n, size := 0, 0
	for n < len(pk.pending) && n < packMaxRows {
		size += len(pk.pending[n].data)
		if n > 0 && size > packMaxBytes {
			break
		}
		n++
	}
	batch := pk.pending[:n:n]
	pk.pending = pk.pending[n:]
	if len(pk.pending) == 0 {
		pk.pending = nil
	}
	return batch
}

// flush commits one batch, token by token, and wakes its jobs.
func (pk *rowPacker) flush(ctx context.Context, batch []*packedRow) {
	ctx, cancel := context.WithTimeout(ctx, packCommitTimeout)
	defer cancel()
	byToken := map[string][]*packedRow{}
	var order []string
	for _, r := range batch {
		if _, ok := byToken[r.token]; !ok {
			order = append(order, r.token)
		}
		byToken[r.token] = append(byToken[r.token], r)
	}
	for _, token := range order {
		rows := byToken[token]
		err := pk.flushToken(ctx, token, rows)
		for _, r := range rows {
			if err != nil {
				r.err = err
			}
			close(r.done)
		}
	}
}

func (pk *rowPacker) flushToken(ctx context.Context, token string, rows []*packedRow) error {
	var buf bytes.Buffer
	for _, r := range rows {
		if r.data != nil {
			start := buf.Len()
			writeBlob(&buf, path.Base(r.res.File), r.data)
			r.res.Offset, r.res.Size = int64(start), int64(buf.Len()-start)
			r.res.NameInPack = true
		}
	}
	if anyData(rows) {
		key, base, err := pk.write(ctx, token, buf.Bytes())
		if err != nil {
			return err
		}
		// The ledger keeps names, not keys (the token's prefix is known),
		// to keep a million-row ledger small in Redis.
		for _, r := range rows {
			if r.data != nil {
				r.res.Pack, r.res.File = path.Base(key), path.Base(r.res.File)
				r.res.Offset += base
			}
		}
	}
	results := make([]RowResult, len(rows))
	for i, r := range rows {
		results[i] = r.res
	}
	isNew, last, err := pk.ledger.RecordBatch(ctx, token, results)
	if err != nil {
		return err
	}
	for i, r := range rows {
		r.isNew, r.last = isNew[i], i == last
	}
	return nil
}

// A row in a pack is a blob: the file's name (uvarint length, bytes), then
// the file. The name lives in the pack, not in Redis, so the ledger's
// entry per row stays a fixed 16 bytes.
func writeBlob(buf *bytes.Buffer, name string, data []byte) {
	buf.Write(binary.AppendUvarint(nil, uint64(len(name))))
	buf.WriteString(name)
	buf.Write(data)
}

// maxNameBytes bounds a blob's name, so a corrupt header is caught.
const maxNameBytes = 1024

// splitBlob reads the name at the start of a blob of size bytes from r and
// returns it and the file's bytes after it.
func splitBlob(r io.ReaderAt, off, size int64) (string, *io.SectionReader, error) {
	var hdr [binary.MaxVarintLen64 + maxNameBytes]byte
	n, err := r.ReadAt(hdr[:min(int64(len(hdr)), size)], off)
	if err != nil && err != io.EOF {
		return "", nil, err
	}
	l, k := binary.Uvarint(hdr[:n])
	if k <= 0 || l > maxNameBytes || int64(k)+int64(l) > size {
		return "", nil, fmt.Errorf("row blob at %d: bad name header", off)
	}
	name := string(hdr[k : k+int(l)])
	start := off + int64(k) + int64(l)
	return name, io.NewSectionReader(r, start, off+size-start), nil
}

// write stores one pack of token's rows and returns the object it is in and
// its offset there: appended to the token's segment when the store can
// append, else an object of its own.
func (pk *rowPacker) write(ctx context.Context, token string, b []byte) (key string, off int64, err error) {
	ap, ok := pk.store.(storage.Appender)
	if !ok {
		key = RowKeyPrefix(token) + newPackName()
		if err := pk.store.Put(ctx, key, bytes.NewReader(b)); err != nil {
			return "", 0, fmt.Errorf("store row pack %s: %w", key, err)
		}
		return key, 0, nil
	}
	pk.segMu.Lock()
	defer pk.segMu.Unlock()
	seg := pk.segs[token]
	if seg != nil && seg.size+int64(len(b)) > segmentMaxBytes {
		pk.closeSegment(token)
		seg = nil
	}
	if seg == nil {
		key := RowKeyPrefix(token) + newPackName()
		w, err := ap.OpenAppend(ctx, key)
		if err != nil {
			return "", 0, fmt.Errorf("row segment: %w", err)
		}
		seg = &segment{key: key, w: w}
		if pk.segs == nil {
			pk.segs = map[string]*segment{}
		}
		pk.segs[token] = seg
	}
	off = seg.size
	n, err := seg.w.Write(b)
	seg.size += int64(n)
	if err != nil {
		// The tail may be partial: no entry points at it, and the next
		// commit starts a new segment.
		pk.closeSegment(token)
		return "", 0, fmt.Errorf("append row pack to %s: %w", seg.key, err)
	}
	return seg.key, off, nil
}

// release closes token's segment, once its run is finished.
func (pk *rowPacker) release(token string) {
	pk.segMu.Lock()
	defer pk.segMu.Unlock()
	pk.closeSegment(token)
}

// closeSegment closes and forgets token's segment; pk.segMu is held.
func (pk *rowPacker) closeSegment(token string) {
	if seg := pk.segs[token]; seg != nil {
		_ = seg.w.Close()
		delete(pk.segs, token)
	}
}

func anyData(rows []*packedRow) bool {
	for _, r := range rows {
		if r.data != nil {
			return true
		}
	}
	return false
}

func newPackName() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "pack-" + hex.EncodeToString(b[:]) + ".bin"
}

// packReader reads rows back from their packs for the finalizer, keeping
// the few packs last read open (a file: read by range) or loaded (an S3
// object: small, read whole): rows of one pack are neighbours in row order.
type packReader struct {
	store storage.Store
	token string
	keys  []string // most recent last
	packs map[string]*openPack
}

type openPack struct {
	rc   io.ReadCloser
	at   io.ReaderAt // nil: data holds the whole pack
	size int64
	data []byte
}

const packReaderKeep = 8

func newPackReader(store storage.Store, token string) *packReader {
	return &packReader{store: store, token: token, packs: map[string]*openPack{}}
}

// open returns the row file r points at, from its pack or its own object,
// and the file's name.
func (pr *packReader) open(ctx context.Context, r RowResult) (io.ReadCloser, string, error) {
	if r.Pack == "" {
		rc, err := pr.store.Open(ctx, r.File)
		return rc, path.Base(r.File), err
	}
	p, err := pr.load(ctx, RowKeyPrefix(pr.token)+r.Pack)
	if err != nil {
		return nil, "", err
	}
	if r.Offset < 0 || r.Size < 0 || r.Offset+r.Size > p.size {
		return nil, "", fmt.Errorf("row pack %s: bytes %d+%d past its end (%d)", r.Pack, r.Offset, r.Size, p.size)
	}
	var at io.ReaderAt = p.at
	if at == nil {
		at = bytes.NewReader(p.data)
	}
	if !r.NameInPack {
		return io.NopCloser(io.NewSectionReader(at, r.Offset, r.Size)), path.Base(r.File), nil
	}
	name, sec, err := splitBlob(at, r.Offset, r.Size)
	if err != nil {
		return nil, "", fmt.Errorf("row pack %s: %w", r.Pack, err)
	}
	return io.NopCloser(sec), name, nil
}

func (pr *packReader) load(ctx context.Context, key string) (*openPack, error) {
	if p, ok := pr.packs[key]; ok {
		return p, nil
	}
	rc, err := pr.store.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	p := &openPack{rc: rc}
	if f, ok := rc.(interface {
		io.ReaderAt
		Stat() (fs.FileInfo, error)
	}); ok {
		st, err := f.Stat()
		if err != nil {
			rc.Close()
			return nil, fmt.Errorf("row pack %s: %w", key, err)
		}
		p.at, p.size = f, st.Size()
	} else {
		p.data, err = io.ReadAll(io.LimitReader(rc, packMaxBytes+packSoloBytes+1))
		rc.Close()
		p.rc = nil
		if err != nil {
			return nil, fmt.Errorf("read row pack %s: %w", key, err)
		}
		p.size = int64(len(p.data))
	}
	if len(pr.keys) >= packReaderKeep {
		pr.evict(pr.keys[0])
	}
	pr.keys = append(pr.keys, key)
	pr.packs[key] = p
	return p, nil
}

func (pr *packReader) evict(key string) {
	if p := pr.packs[key]; p != nil && p.rc != nil {
		p.rc.Close()
	}
	delete(pr.packs, key)
	pr.keys = slices.DeleteFunc(pr.keys, func(k string) bool { return k == key })
}

// close closes the packs still open.
func (pr *packReader) close() {
	for len(pr.keys) > 0 {
		pr.evict(pr.keys[0])
	}
}
