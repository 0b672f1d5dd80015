package ledger

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/storage"
)

// Row files are group-committed: the rows that finish while one commit is
// in flight are written as one storage object (a pack) and recorded in the
// ledger with one transaction, and only then do their jobs return and get
// acknowledged. One object per commit instead of one per row is what makes
// text rows cheap: creating a small file (or an S3 object) costs far more
// than rendering it. Each commit is a frame (ledger_frames.go) whose index
// says where each row's file is and how the row ended; the ledger in Redis
// keeps only which rows and commits were recorded. The finalizer reads each
// row back from its frame; the ZIP still has one file per row.
const (
	// PackMaxRows and PackMaxBytes bound one commit.
	PackMaxRows  = 256
	PackMaxBytes = 8 << 20
	// PackSoloBytes: a row file at least this big is stored as an object of
	// its own, as before packs, and only its ledger entry is batched.
	PackSoloBytes = 1 << 20
	// segmentMaxBytes: a segment this big is closed and a new one begun.
	segmentMaxBytes = 64 << 20
	// packCommitTimeout bounds one commit; it outlives the job that leads
	// it, so a shutdown does not cut short the rows of other jobs.
	packCommitTimeout = 60 * time.Second
	// commitIDBlock is how many commit ids a packer reserves at once.
	commitIDBlock = 64
)

// packedRow is one finished row waiting for its commit.
type packedRow struct {
	token string
	data  []byte // the row file, nil when it was stored on its own (res.File)
	res   RowResult

	done        chan struct{}
	isNew, last bool
	err         error
	// then, for CommitAsync, is called once the row's commit is done.
	then func(isNew, last bool, err error)
}

// Packer collects finished rows and commits them in groups. Whichever
// job finds no commit in flight leads the next one; the others wait.
type Packer struct {
	store  storage.Store
	ledger Ledger

	mu       sync.Mutex
	pending  []*packedRow
	flushing bool
	// leaders are the goroutines a job handed its lead to (lead); Wait
	// joins them.
	leaders sync.WaitGroup

	segMu sync.Mutex
	segs  map[string]*segment // by token

	idMu sync.Mutex
	ids  map[string]*idBlock // by token
}

// idBlock is a block of commit ids reserved in one ledger generation.
type idBlock struct {
	gen      string
	next, hi uint32
}

// segment is an object this process appends a token's packs to.
type segment struct {
	key  string
	w    io.WriteCloser
	size int64
}

// NewPacker returns a packer that stores rows in store and records them in l.
func NewPacker(store storage.Store, l Ledger) *Packer {
	return &Packer{store: store, ledger: l}
}

// Commit stores a finished row of token (its file's bytes in data, or nil
// when res.File was stored on its own, or for a failed row) and records
// its result, together with whatever other rows are ready.
func (pk *Packer) Commit(ctx context.Context, token string, res RowResult, data []byte) (isNew, last bool, err error) {
	return pk.commit(ctx, &packedRow{token: token, res: res, data: data})
}

// CommitAsync is Commit without waiting: the row joins the next commit,
// and then is called (on a goroutine of the commit's own, which may
// commit again) once it is recorded or has failed. The caller's job returns at once, so a commit is no longer
// bounded by its worker's concurrency: every row that finishes while one
// commit is in flight joins the next (up to PackMaxRows). The caller must
// not count the row as done before then runs (its job stays in flight:
// sidekiq.DeferAck).
func (pk *Packer) CommitAsync(ctx context.Context, token string, res RowResult, data []byte, then func(isNew, last bool, err error)) {
	r := &packedRow{token: token, res: res, data: data, then: then, done: make(chan struct{})}
	pk.mu.Lock()
	pk.pending = append(pk.pending, r)
	lead := !pk.flushing
	pk.flushing = true
	if lead {
		pk.leaders.Add(1)
	}
	pk.mu.Unlock()
	if lead {
		go func() {
			defer pk.leaders.Done()
			pk.lead(context.WithoutCancel(ctx), nil)
		}()
	}
}

// commit stores r's file and records its result, together with whatever
// other rows are ready, and reports how r was recorded.
func (pk *Packer) commit(ctx context.Context, r *packedRow) (isNew, last bool, err error) {
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
func (pk *Packer) lead(ctx context.Context, own *packedRow) {
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
			pk.leaders.Add(1)
			go func() {
				defer pk.leaders.Done()
				pk.lead(ctx, nil)
			}()
			return
		}
	}
}

// Wait returns once no goroutine a job handed its lead to is running: the
// rows given to Commit before have been committed (or failed, each within
// packCommitTimeout) and CommitAsync's thens have run. Call it after whatever commits rows has stopped.
func (pk *Packer) Wait() { pk.leaders.Wait() }

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// take removes the next batch from pending; pk.mu is held.
func (pk *Packer) take() []*packedRow {
	n, size := 0, 0
	for n < len(pk.pending) && n < PackMaxRows {
		size += len(pk.pending[n].data)
		if n > 0 && size > PackMaxBytes {
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
func (pk *Packer) flush(ctx context.Context, batch []*packedRow) {
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
	var thens []*packedRow
	for _, token := range order {
		rows := byToken[token]
		err := pk.flushToken(ctx, token, rows)
		for _, r := range rows {
			if err != nil {
				r.err = err
			}
			close(r.done)
			if r.then != nil {
				thens = append(thens, r)
			}
		}
	}
	if len(thens) == 0 {
		return
	}
	// Not on this goroutine, which leads the commits: a then may commit a
	// row itself (a failed row's job, out of retries, is recorded failed
	// by its death handler through Commit), and would wait for ever on the
	// next commit it was meant to lead.
	pk.leaders.Add(1)
	go func() {
		defer pk.leaders.Done()
		for _, r := range thens {
			r.then(r.isNew, r.last, r.err)
		}
	}()
}

func (pk *Packer) flushToken(ctx context.Context, token string, rows []*packedRow) error {
	rs := make([]RowResult, len(rows))
	data := make([][]byte, len(rows))
	for i, r := range rows {
		rs[i], data[i] = r.res, r.data
	}
	isNew, last, err := pk.CommitRows(ctx, token, rs, data)
	if err != nil {
		return err
	}
	for i, r := range rows {
		r.isNew, r.last = isNew[i], i == last
	}
	return nil
}

// commitRows stores one frame of token's rows (data[i] is rs[i]'s file, nil
// when it has none or is stored on its own as rs[i].File) and records them
// in the ledger as one commit. A commit refused because the ledger was
// rebuilt meanwhile is made again once in the new generation.
func (pk *Packer) CommitRows(ctx context.Context, token string, rs []RowResult, data [][]byte) (isNew []bool, last int, err error) {
	for attempt := 0; ; attempt++ {
		isNew, last, err = pk.commitOnce(ctx, token, rs, data)
		if !errors.Is(err, errLedgerGen) || attempt > 0 {
			return isNew, last, err
		}
		pk.dropIDs(token)
	}
}

func (pk *Packer) commitOnce(ctx context.Context, token string, rs []RowResult, data [][]byte) ([]bool, int, error) {
	if !slices.ContainsFunc(rs, func(r RowResult) bool { return r.Row > 0 }) && !slices.ContainsFunc(data, func(b []byte) bool { return b != nil }) {
		// Rows known only by jid, without files: Redis holds all of them.
		return pk.ledger.RecordBatch(ctx, token, rs)
	}
	gen, id, err := pk.nextID(ctx, token)
	if err != nil {
		return nil, -1, err
	}
	var buf bytes.Buffer
	var entries []frameEntry
	blobAt := make([]int64, len(rs))
	for i, r := range rs {
		blobAt[i] = -1
		e := frameEntry{row: r.Row, failed: r.Status != "done", err: cmp.Or(r.Error, "failed")}
		switch {
		case data[i] != nil:
			blobAt[i] = int64(buf.Len())
			writeBlob(&buf, path.Base(r.File), data[i])
			e.kind, e.off, e.size = entryBlob, blobAt[i], int64(buf.Len())-blobAt[i]
		case r.File != "" && !e.failed:
			e.kind, e.name = entrySolo, path.Base(r.File)
		}
		if r.Row > 0 {
			entries = append(entries, e)
		}
	}
	frame, err := encodeFrame(gen, id, entries, buf.Bytes())
	if err != nil {
		return nil, -1, err
	}
	key, base, err := pk.write(ctx, token, frame)
	if err != nil {
		return nil, -1, err
	}
	// Rows known only by jid keep where they are in Redis (their JSON).
	dataStart := base + int64(len(frame)-buf.Len())
	recs := slices.Clone(rs)
	for i := range recs {
		if recs[i].Row > 0 {
			continue
		}
		if blobAt[i] >= 0 {
			recs[i].Pack, recs[i].File, recs[i].NameInPack = path.Base(key), path.Base(recs[i].File), true
			end := int64(buf.Len())
			for k := i + 1; k < len(recs); k++ {
				if blobAt[k] >= 0 {
					end = blobAt[k]
					break
				}
			}
			recs[i].Offset, recs[i].Size = dataStart+blobAt[i], end-blobAt[i]
		}
	}
	return pk.ledger.recordCommit(ctx, token, gen, id, recs)
}

// nextID hands out the next commit id of token, reserving a block when
// none is left.
func (pk *Packer) nextID(ctx context.Context, token string) (string, uint32, error) {
	pk.idMu.Lock()
	defer pk.idMu.Unlock()
	b := pk.ids[token]
	if b == nil || b.next > b.hi {
		gen, hi, err := pk.ledger.reserveCommits(ctx, token, commitIDBlock)
		if err != nil {
			return "", 0, err
		}
		b = &idBlock{gen: gen, next: hi - commitIDBlock + 1, hi: hi}
		if pk.ids == nil {
			pk.ids = map[string]*idBlock{}
		}
		pk.ids[token] = b
	}
	id := b.next
	b.next++
	return b.gen, id, nil
}

func (pk *Packer) dropIDs(token string) {
	pk.idMu.Lock()
	defer pk.idMu.Unlock()
	delete(pk.ids, token)
}

// A row in a pack is a blob: the file's name (uvarint length, bytes), then
// the file. The name lives in the pack, not in Redis.
func writeBlob(buf *bytes.Buffer, name string, data []byte) {
	buf.Write(binary.AppendUvarint(nil, uint64(len(name))))
	buf.WriteString(name)
	buf.Write(data)
}

// maxNameBytes bounds a blob's name, so a corrupt header is caught.
const maxNameBytes = 1024

// splitBlob reads the name at the start of a blob of size bytes from r and
// returns it and the file's bytes after it. It reads a short header first
// and the rest of a long name only when there is one: a header buffer of
// maxNameBytes escaped to the heap every row, a third of a 3.4 M-row
// finalizer's garbage.
func splitBlob(r io.ReaderAt, off, size int64) (string, *io.SectionReader, error) {
	var hdr [blobHeadBytes]byte
	n, err := r.ReadAt(hdr[:min(int64(len(hdr)), size)], off)
	if err != nil && err != io.EOF {
		return "", nil, err
	}
	l, k := binary.Uvarint(hdr[:n])
	if k <= 0 || l > maxNameBytes || int64(k)+int64(l) > size {
		return "", nil, fmt.Errorf("row blob at %d: bad name header", off)
	}
	var name string
	if k+int(l) <= n {
		name = string(hdr[k : k+int(l)])
	} else {
		b := make([]byte, l)
		if _, err := r.ReadAt(b, off+int64(k)); err != nil && err != io.EOF {
			return "", nil, err
		}
		name = string(b)
	}
	start := off + int64(k) + int64(l)
	return name, io.NewSectionReader(r, start, off+size-start), nil
}

// blobHeadBytes is what splitBlob reads first: the length and a name as
// render.FileName makes them, most of the time.
const blobHeadBytes = 96

// write stores one pack of token's rows and returns the object it is in and
// its offset there: appended to the token's segment when the store can
// append, else an object of its own.
func (pk *Packer) write(ctx context.Context, token string, b []byte) (key string, off int64, err error) {
	ap, ok := pk.store.(storage.Appender)
	if !ok {
		key = contract.RowKeyPrefix(token) + newPackName()
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
		key := contract.RowKeyPrefix(token) + newPackName()
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

// Release closes token's segment and forgets its commit ids, once its run
// is finished.
func (pk *Packer) Release(token string) {
	pk.segMu.Lock()
	pk.closeSegment(token)
	pk.segMu.Unlock()
	pk.dropIDs(token)
}

// closeSegment closes and forgets token's segment; pk.segMu is held.
func (pk *Packer) closeSegment(token string) {
	if seg := pk.segs[token]; seg != nil {
		_ = seg.w.Close()
		delete(pk.segs, token)
	}
}

func newPackName() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "pack-" + hex.EncodeToString(b[:]) + ".bin"
}

// PackReader reads rows back from their packs for the finalizer, keeping
// the few packs last read open (a file: read by range) or loaded (an S3
// object: small, read whole): rows of one pack are neighbours in row order.
type PackReader struct {
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

func NewPackReader(store storage.Store, token string) *PackReader {
	return &PackReader{store: store, token: token, packs: map[string]*openPack{}}
}

// open returns the row file r points at, from its pack or its own object,
// and the file's name.
func (pr *PackReader) Open(ctx context.Context, r RowResult) (io.ReadCloser, string, error) {
	if r.Pack == "" {
		rc, err := pr.store.Open(ctx, r.File)
		return rc, path.Base(r.File), err
	}
	p, err := pr.load(ctx, contract.RowKeyPrefix(pr.token)+r.Pack)
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

// randomAccess gives the reader and size of a stored object that can be
// read at offsets (a local segment file); ok is false for a stream (an S3
// object), which is read from its start.
func randomAccess(rc io.Reader) (at io.ReaderAt, size int64, ok bool, err error) {
	f, ok := rc.(interface {
		io.ReaderAt
		Stat() (fs.FileInfo, error)
	})
	if !ok {
		return nil, 0, false, nil
	}
	st, err := f.Stat()
	if err != nil {
		return nil, 0, false, err
	}
	return f, st.Size(), true, nil
}

func (pr *PackReader) load(ctx context.Context, key string) (*openPack, error) {
	if p, ok := pr.packs[key]; ok {
		return p, nil
	}
	rc, err := pr.store.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	p := &openPack{rc: rc}
	if at, size, ok, err := randomAccess(rc); err != nil {
		rc.Close()
		return nil, fmt.Errorf("row pack %s: %w", key, err)
	} else if ok {
		p.at, p.size = at, size
	} else {
		p.data, err = io.ReadAll(io.LimitReader(rc, PackMaxBytes+PackSoloBytes+1))
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

func (pr *PackReader) evict(key string) {
	if p := pr.packs[key]; p != nil && p.rc != nil {
		p.rc.Close()
	}
	delete(pr.packs, key)
	pr.keys = slices.DeleteFunc(pr.keys, func(k string) bool { return k == key })
}

// close closes the packs still open.
func (pr *PackReader) Close() {
	for len(pr.keys) > 0 {
		pr.evict(pr.keys[0])
	}
}
