package retry

import (
	"context"
	"fmt"
	"io"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/ledger"
	"github.com/pallarel/pallarel/reportzip"
	"github.com/pallarel/pallarel/storage"
)

// openResult opens token's stored ZIP; storage.ErrNotExist (wrapped) when
// the run has none.
func openResult(ctx context.Context, store storage.Store, token string) (*reportzip.Archive, error) {
	rc, err := store.Open(ctx, contract.ResultKey(token))
	if err != nil {
		return nil, err
	}
	z, err := reportzip.Read(rc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", contract.ResultKey(token), err)
	}
	return z, nil
}

// restored is what restoreFromZip put back.
type restored struct {
	done, failed int
	failedRows   map[int]string // row number → the error it failed with
	maxRow       int
}

// restoreFromZip rebuilds token's ledger from its ZIP: done rows are
// written back to row storage in packs, as the row jobs write them, and
// recorded; failed rows without a number are recorded failed again;
// numbered failed rows are left out and returned.
func (r *Retrier) restoreFromZip(ctx context.Context, token string) (restored, error) {
	out := restored{failedRows: map[int]string{}}
	z, err := openResult(ctx, r.p.Store, token)
	if err != nil {
		return out, err
	}
	defer z.Close()
	files := make(map[string]int, len(z.File))
	for i, f := range z.File {
		files[f.Name] = i
	}
	if err := r.p.Ledger.Reset(ctx, token); err != nil {
		return out, err
	}
	// The packer's commit ids were of the ledger just reset; the row files
	// left are of the first run.
	r.p.Packer.Release(token)
	r.warnIf(r.p.Store.DeletePrefix(ctx, contract.RowKeyPrefix(token)), "delete row files")
	var (
		batch   []ledger.RowResult
		data    [][]byte // batch[i]'s file, or nil
		size    int
		unnamed int
	)
	flush := func() error {
		if len(batch) > 0 {
			if _, _, err := r.p.Packer.CommitRows(ctx, token, batch, data); err != nil {
				return err
			}
		}
		batch, data, size = batch[:0], data[:0], 0
		return nil
	}
	err = z.EachManifest(func(m reportzip.ManifestEntry) error {
		out.maxRow = max(out.maxRow, m.Row)
		key := ledger.RowKey(m.Row, "")
		if m.Row <= 0 {
			unnamed++
			key = fmt.Sprintf("jid-restored-%d", unnamed)
		}
		if m.Status != reportzip.StatusDone {
			out.failed++
			if m.Row > 0 {
				out.failedRows[m.Row] = m.Error
				return nil
			}
			batch, data = append(batch, ledger.RowResult{Row: m.Row, Key: key, Status: "failed", Error: m.Error}), append(data, nil)
			return nil
		}
		out.done++
		res := ledger.RowResult{Row: m.Row, Key: key, Status: "done"}
		i, ok := files[m.File]
		if m.File == "" || !ok {
			batch, data = append(batch, res), append(data, nil)
			return nil
		}
		zf := z.File[i]
		rc, err := zf.Open()
		if err != nil {
			return fmt.Errorf("zip %s: %w", m.File, err)
		}
		defer rc.Close()
		if zf.UncompressedSize64 >= ledger.PackSoloBytes {
			res.File = contract.RowKeyPrefix(token) + m.File
			if err := r.p.Store.Put(ctx, res.File, rc); err != nil {
				return err
			}
			batch, data = append(batch, res), append(data, nil)
		} else {
			b, err := io.ReadAll(rc)
			if err != nil {
				return fmt.Errorf("zip %s: %w", m.File, err)
			}
			res.File = m.File
			batch, data = append(batch, res), append(data, b)
			size += len(b)
		}
		if size >= ledger.PackMaxBytes || len(batch) >= ledger.PackMaxRows {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	r.p.Packer.Release(token)
	return out, err
}
