package jobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
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
			r.res.Offset, r.res.Size = int64(buf.Len()), int64(len(r.data))
			buf.Write(r.data)
		}
	}
	if anyData(rows) {
		key := RowKeyPrefix(token) + newPackName()
		if err := pk.store.Put(ctx, key, bytes.NewReader(buf.Bytes())); err != nil {
			return fmt.Errorf("store row pack %s: %w", key, err)
		}
		for _, r := range rows {
			if r.data != nil {
				r.res.Pack = key
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
// the few packs last read: rows of one pack are neighbours in row order.
type packReader struct {
	store storage.Store
	keys  []string // most recent last
	data  map[string][]byte
}

const packReaderKeep = 8

func newPackReader(store storage.Store) *packReader {
	return &packReader{store: store, data: map[string][]byte{}}
}

// open returns the row file r points at, from its pack or its own object.
func (pr *packReader) open(ctx context.Context, r RowResult) (io.ReadCloser, error) {
	if r.Pack == "" {
		return pr.store.Open(ctx, r.File)
	}
	pack, err := pr.load(ctx, r.Pack)
	if err != nil {
		return nil, err
	}
	if r.Offset < 0 || r.Size < 0 || r.Offset+r.Size > int64(len(pack)) {
		return nil, fmt.Errorf("row pack %s: bytes %d+%d past its end (%d)", r.Pack, r.Offset, r.Size, len(pack))
	}
	return io.NopCloser(bytes.NewReader(pack[r.Offset : r.Offset+r.Size])), nil
}

func (pr *packReader) load(ctx context.Context, key string) ([]byte, error) {
	if b, ok := pr.data[key]; ok {
		return b, nil
	}
	rc, err := pr.store.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, packMaxBytes+packSoloBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read row pack %s: %w", key, err)
	}
	if len(pr.keys) >= packReaderKeep {
		delete(pr.data, pr.keys[0])
		pr.keys = pr.keys[1:]
	}
	pr.keys = append(pr.keys, key)
	pr.data[key] = b
	return b, nil
}
