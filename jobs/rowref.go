package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/csvrows"
	"github.com/pallarel/pallarel/launcher"
	"github.com/pallarel/pallarel/sidekiq"
	"github.com/pallarel/pallarel/storage"
)

// Row cells in Redis (ROW_CELLS): a row job carries its row's cells (the
// app's row_hash) or a reference to the row in the stored upload
// (contract.RowRef), which keeps personal data out of Redis, its AOF and
// RDB files, and the retry and dead sets.
const (
	// RowCellsAuto pushes references when the run is Go's alone: the
	// launcher starts Go workers (not LAUNCHER=none) and no Ruby Sidekiq
	// serves the run's queue; the app's plain row_hash otherwise.
	RowCellsAuto = "auto"
	// RowCellsRef always pushes references (Go's workers only).
	RowCellsRef = "ref"
	// RowCellsInline always pushes the app's row_hash (a Ruby worker of
	// the Rails app may run the rows: an ECS task definition of the app's
	// image, or a Ruby Sidekiq started on the token's queue by hand).
	RowCellsInline = "inline"
)

// ValidRowCells reports whether mode is a ROW_CELLS value ("" is auto).
func ValidRowCells(mode string) bool {
	switch mode {
	case "", RowCellsAuto, RowCellsRef, RowCellsInline:
		return true
	}
	return false
}

// rowSource is where a run's rows sit in storage, for references: the
// upload's key, where its header row ends and its encoding (a Shift_JIS
// row is decoded alone again: csvrows finds its exact bytes). Nil when
// rows go inline.
type rowSource struct {
	key      string
	header   int64
	encoding string // "" for UTF-8, as contract.RowRef has it
}

// newRowSource is the source of rows read right after csvrows.NewReader on
// key, or nil when the reader's offsets are not exact input positions.
func newRowSource(key string, rows *csvrows.Reader) *rowSource {
	if !rows.OffsetsExact() {
		return nil
	}
	src := &rowSource{key: key, header: rows.Offset()}
	if rows.Encoding() == csvrows.EncodingShiftJIS {
		src.encoding = csvrows.EncodingShiftJIS
	}
	return src
}

// ref is the reference to row, read from src.
func (src *rowSource) ref(row csvrows.Row) contract.RowRef {
	return contract.RowRef{SourceKey: src.key, Header: src.header, Offset: row.Start, Length: row.End - row.Start, Encoding: src.encoding}
}

// refEncoding is the csvrows encoding of ref's upload.
func refEncoding(ref contract.RowRef) string {
	if ref.Encoding == "" {
		return csvrows.EncodingUTF8
	}
	return ref.Encoding
}

// refsFor is src when the rows of the run on queue go as references now,
// else nil (ROW_CELLS; a Ruby worker on the queue turns auto to inline).
func (p *Pipeline) refsFor(ctx context.Context, queue string, src *rowSource) (*rowSource, error) {
	if src == nil {
		return nil, nil
	}
	switch p.d.RowCells {
	case RowCellsRef:
		return src, nil
	case RowCellsInline:
		return nil, nil
	}
	if _, none := p.d.Launcher.(launcher.Noop); none {
		return nil, nil // an operator runs the workers: they may be the app's
	}
	ruby, err := p.rubyServes(ctx, queue)
	if err != nil || ruby {
		return nil, err
	}
	return src, nil
}

// rubyServes reports whether a live Sidekiq process that is not Go's (no
// "pallarel" label) serves queue, as runBooks tells them apart.
func (p *Pipeline) rubyServes(ctx context.Context, queue string) (bool, error) {
	procs, err := p.liveProcesses(ctx)
	if err != nil {
		return false, fmt.Errorf("who serves %s: %w", queue, err)
	}
	for _, pr := range procs {
		if slices.Contains(pr.Queues, queue) && !slices.Contains(pr.Labels, "pallarel") {
			return true, nil
		}
	}
	return false, nil
}

// isRowRefJob reports whether job is a row job whose first argument is a
// contract.RowRef: six arguments, the sixth contract.RowRefMarker.
func isRowRefJob(job *sidekiq.Job) bool {
	args, err := job.Arguments()
	if err != nil || len(args) != 6 {
		return false
	}
	m, ok := plainJSONString(args[5])
	return ok && m == contract.RowRefMarker
}

// scanRowRefArgs reads a reference row job's arguments.
func scanRowRefArgs(job *sidekiq.Job, ref *contract.RowRef, typ *string, reportID *int64, path, token *string) error {
	var marker string
	var raw json.RawMessage
	if err := job.ScanArgs(&raw, typ, reportID, path, token, &marker); err != nil {
		return err
	}
	if err := json.Unmarshal(raw, ref); err != nil {
		return fmt.Errorf("%w: row reference: %v", sidekiq.ErrBadArgs, err)
	}
	if ref.SourceKey == "" || ref.Header <= 0 || ref.Offset < ref.Header || ref.Length <= 0 || ref.Length > maxRowHashBytes ||
		(ref.Encoding != "" && ref.Encoding != csvrows.EncodingShiftJIS) {
		return fmt.Errorf("%w: row reference %+v is no row a split makes", sidekiq.ErrBadArgs, *ref)
	}
	return nil
}

// headerCache keeps the header bytes of the last few runs' uploads, so a
// row job reads only its own row's bytes; an entry is made only after the
// reference's upload was checked to be its run's.
type headerCache struct {
	mu sync.Mutex
	m  map[headerKey]refHeader
}

// refHeader is an upload's header row: its bytes and column names, and
// the upload held open when the store can (local storage: a pread a row
// instead of an open, a seek and a close; the file closes when the entry
// is garbage, so a row reading it never sees it closed).
type refHeader struct {
	bytes   []byte
	headers []string
	at      storage.ReadAtCloser
}

type headerKey struct {
	token, source, encoding string
	header                  int64
}

// readRowRef reads the row ref names from the run's stored upload: the
// cells the split read, nil and "" cells as it had them. A reference to
// any other object, or bytes that are no longer that row (the upload
// changed or is gone), kill the job: it fails the same way on every retry.
func (p *Pipeline) readRowRef(ctx context.Context, token string, ref contract.RowRef) ([]string, map[string]string, error) {
	headers, row, err := p.readRowRefRow(ctx, token, ref)
	return headers, row.Fields, err
}

// readRowRefRow is readRowRef with the row's nil cells (csvrows.Row.Nulls),
// to make the app's row_hash of it.
func (p *Pipeline) readRowRefRow(ctx context.Context, token string, ref contract.RowRef) ([]string, csvrows.Row, error) {
	fail := func(err error) ([]string, csvrows.Row, error) { return nil, csvrows.Row{}, err }
	h, err := p.refHeader(ctx, token, ref)
	if err != nil {
		return fail(err)
	}
	var rec []byte
	if h.at != nil {
		rec, err = storage.ReadAtExactly(h.at, ref.SourceKey, ref.Offset, ref.Length)
	} else {
		rec, err = storage.ReadRange(ctx, p.d.Store, ref.SourceKey, ref.Offset, ref.Length)
	}
	if errors.Is(err, storage.ErrNotExist) || errors.Is(err, storage.ErrShortRange) {
		return fail(sidekiq.Kill(fmt.Errorf("row of %s: %w", token, err)))
	}
	if err != nil {
		return fail(fmt.Errorf("row of %s: %w", token, err))
	}
	row, err := csvrows.ReadRange(h.bytes, rec, csvrows.Options{Encoding: refEncoding(ref)})
	if err == nil {
		err = row.Err
	}
	if err != nil {
		return fail(sidekiq.Kill(fmt.Errorf("row of %s at bytes %d+%d of %s: %w", token, ref.Offset, ref.Length, ref.SourceKey, err)))
	}
	return slices.Clone(h.headers), row, nil
}

// refHeader returns the header bytes ref names, after checking that ref's
// upload is token's (its status row's source, or its report's): a pushed
// reference must not read another run's upload, or any other object.
func (p *Pipeline) refHeader(ctx context.Context, token string, ref contract.RowRef) (refHeader, error) {
	k := headerKey{token, ref.SourceKey, ref.Encoding, ref.Header}
	c := &p.headers
	c.mu.Lock()
	h, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return h, nil
	}
	own := false
	if st, err := p.d.DB.StatusByToken(ctx, token); err == nil {
		spec, _ := parseSpec(st.SourceSpec)
		own = spec.SourceKey == ref.SourceKey
	}
	if !own {
		if rep, err := p.d.DB.ReportByToken(ctx, token); err == nil {
			own = rep.SourceKey == ref.SourceKey
		}
	}
	if !own {
		return refHeader{}, sidekiq.Kill(fmt.Errorf("%w: row reference to %s, which is not the upload of run %s", sidekiq.ErrBadArgs, ref.SourceKey, token))
	}
	b, err := storage.ReadRange(ctx, p.d.Store, ref.SourceKey, 0, ref.Header)
	if errors.Is(err, storage.ErrNotExist) || errors.Is(err, storage.ErrShortRange) {
		return refHeader{}, sidekiq.Kill(fmt.Errorf("header of %s: %w", token, err))
	}
	if err != nil {
		return refHeader{}, fmt.Errorf("header of %s: %w", token, err)
	}
	r, err := csvrows.NewReader(bytes.NewReader(b), csvrows.Options{Encoding: refEncoding(ref)})
	if err != nil {
		return refHeader{}, sidekiq.Kill(fmt.Errorf("header of %s in %s: %w", token, ref.SourceKey, err))
	}
	h = refHeader{bytes: b, headers: r.Headers()}
	if o, ok := p.d.Store.(storage.ReaderAtOpener); ok {
		if h.at, err = o.OpenReaderAt(ctx, ref.SourceKey); err != nil {
			return refHeader{}, fmt.Errorf("open %s: %w", ref.SourceKey, err)
		}
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= 8 {
		c.m = map[headerKey]refHeader{}
	}
	c.m[k] = h
	c.mu.Unlock()
	return h, nil
}
