package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/csvrows"
	"github.com/pallarel/pallarel/ledger"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/sidekiq"
)

// maxRowHashBytes bounds a row job's row_hash: four times the largest row
// the split reads (csvrows' 8 MiB), room for JSON's escapes.
const maxRowHashBytes = 4 * csvrows.DefaultMaxRowBytes

func unmarshalArg(raw json.RawMessage, dst any) error {
	return json.Unmarshal(raw, dst)
}

// handleRow makes one report file for one CSV row:
// [row_hash, type, report_id, path, token]. path is the Rails worker's local
// directory; Go writes to the configured storage instead, so that any
// number of workers on any machines can share a token.
func (p *Pipeline) handleRow(ctx context.Context, job *sidekiq.Job) error {
	var (
		rowRaw   json.RawMessage
		typ      string
		reportID int64
		path     string
		token    string
	)
	var ref contract.RowRef
	isRef := isRowRefJob(job)
	if isRef {
		if err := scanRowRefArgs(job, &ref, &typ, &reportID, &path, &token); err != nil {
			return err
		}
	} else if err := scanRowArgs(job, &rowRaw, &typ, &reportID, &path, &token); err != nil {
		return err
	}
	if _, err := p.tokenQueue(token); err != nil {
		return err
	}
	if len(rowRaw) > maxRowHashBytes {
		// No split makes such a row: a client pushed it. Refuse it before
		// rendering holds a processor (and its memory) for it.
		return sidekiq.Kill(fmt.Errorf("%w: row_hash of %d bytes is larger than any row a split makes (at most %d bytes as JSON)",
			sidekiq.ErrBadArgs, len(rowRaw), maxRowHashBytes))
	}
	var (
		headers []string
		fields  map[string]string
		err     error
	)
	if isRef {
		// The row is read again from the stored upload: its cells were
		// never in Redis.
		headers, fields, err = p.readRowRef(ctx, token, ref)
		if err != nil {
			return err
		}
	} else if headers, fields, err = orderedObject(rowRaw); err != nil {
		return fmt.Errorf("%w: row_hash: %v", sidekiq.ErrBadArgs, err)
	}
	rowNum := rowNumber(job)
	if rowNum == 0 {
		// Pushed by a Ruby split: numbered in push order (rubyrows.go).
		if rowNum, err = p.rubyRowNumber(ctx, token, job.Queue, job.JID); err != nil {
			return err
		}
	}
	key := ledger.RowKey(rowNum, job.JID)

	r, err := p.renderer(ctx, typ, job.StringField(contract.FieldTemplate))
	if err != nil {
		return err
	}
	row := render.Row{Number: rowNum, Headers: headers, Fields: fields}
	idField := ""
	if len(headers) > 0 {
		idField = headers[0]
	}
	name := render.FileName(row, r, idField)
	if rowNum == 0 {
		name = job.JID + "-" + name
	}
	fileKey := contract.RowKeyPrefix(token) + name

	var out bytes.Buffer
	if err := r.Render(ctx, &out, row); err != nil {
		what := name
		if isRef {
			what = "its file" // the name holds the id cell, and the error goes to Redis (retry, dead, the run's errors)
		}
		err = fmt.Errorf("row %s of %s: render %s: %w", key, token, what, err)
		if errors.Is(err, render.ErrCellTooLong) {
			err = sidekiq.Kill(err) // the data is what it is: fails again on every retry
		}
		return err
	}
	// The copy for the app's finalizer is written before the row counts
	// as done: that finalizer zips once done_count reaches the total.
	if err := p.copyToAppDir(token, name, out.Bytes()); err != nil {
		return fmt.Errorf("row %s of %s: %w", key, token, err)
	}
	done := ledger.RowResult{Row: rowNum, Key: key, Status: "done", File: fileKey}
	var data []byte
	if out.Len() >= ledger.PackSoloBytes {
		if err := p.d.Store.Put(ctx, fileKey, &out); err != nil {
			return fmt.Errorf("row %s of %s: store %s: %w", key, token, fileKey, err)
		}
	} else {
		data = out.Bytes()
		if data == nil {
			data = []byte{} // an empty file, still packed
		}
	}
	queue := job.Queue
	settled := func(isNew, last bool, err error) error {
		if err != nil {
			return fmt.Errorf("row %s of %s: %w", key, token, err)
		}
		if isNew {
			p.countRow(ctx, token, 1, 0)
		}
		if last {
			p.finalizeNow(ctx, queue, token, typ, reportID)
		}
		return nil
	}
	if settle, ok := sidekiq.DeferAck(ctx); ok {
		// The job returns now and is acknowledged once its commit is
		// recorded (a kill before then runs it again; the ledger keeps
		// one result): the commit gathers every row that ends while the
		// one before it is in flight, not only this worker's -c.
		ctx = context.WithoutCancel(ctx) // the job's context ends when it returns
		p.packer.CommitAsync(ctx, token, done, data, func(isNew, last bool, err error) {
			settle(settled(isNew, last, err))
		})
		return nil
	}
	return settled(p.packer.Commit(ctx, token, done, data))
}

// finalizeNow pushes the finalizer as soon as the last row has ended, so a
// run finishes at once rather than at the finalizer's next check (its
// claim keeps it to one finish however many copies run).
func (p *Pipeline) finalizeNow(ctx context.Context, queue, token, typ string, reportID int64) {
	fin, err := p.newFinalizeJob(queue, typ, reportID, token)
	if err != nil {
		return
	}
	if _, err := p.d.Client.Push(ctx, fin); err != nil {
		p.log.Warn("push finalize after the last row (the periodic check will finish)", "token", token, "err", err)
	}
}

// renderer picks the renderer for a report type ("default" is xlsx, as the
// Rails form's default), or an XLSX template renderer when the job names one.
func (p *Pipeline) renderer(ctx context.Context, typ, templateKey string) (render.Renderer, error) {
	if typ == "" || typ == "default" {
		typ = "xlsx"
	}
	if templateKey != "" && typ == "xlsx" {
		return p.templateRenderer(ctx, templateKey)
	}
	r, err := p.d.Renderers.Get(typ)
	if err != nil {
		return nil, sidekiq.Kill(fmt.Errorf("report type %q: %w", typ, err))
	}
	return r, nil
}

// templateCache keeps each template prepared once per process: a run's
// rows all use the same one.
type templateCache struct {
	mu sync.Mutex
	m  map[string]render.Renderer
}

func (p *Pipeline) templateRenderer(ctx context.Context, key string) (render.Renderer, error) {
	p.templates.mu.Lock()
	defer p.templates.mu.Unlock()
	if r, ok := p.templates.m[key]; ok {
		return r, nil
	}
	rc, err := p.d.Store.Open(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("open template %s: %w", key, err)
	}
	defer rc.Close()
	limits := p.d.TemplateLimits.WithDefaults()
	// One byte past the limit is enough for the check to refuse it.
	data, err := io.ReadAll(io.LimitReader(rc, limits.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read template %s: %w", key, err)
	}
	r, err := render.NewXLSXTemplate(data, limits)
	if err != nil {
		return nil, sidekiq.Kill(fmt.Errorf("template %s: %w", key, err))
	}
	if p.templates.m == nil || len(p.templates.m) >= 4 {
		p.templates.m = map[string]render.Renderer{}
	}
	p.templates.m[key] = r
	return r, nil
}

// orderedObject decodes a JSON object keeping its key order (the CSV
// column order); non-string values are turned into their JSON text. It
// reads with jsontext (the json/v2 tokenizer): on text rows this decode was
// a large share of a row job's CPU with encoding/json's Token API.
func orderedObject(raw json.RawMessage) ([]string, map[string]string, error) {
	if keys, fields, ok := flatObject(raw); ok {
		return keys, fields, nil // what the split writes, read in one pass (rowhash.go)
	}
	return decodeOrdered(raw)
}

// decodeOrdered is orderedObject for any JSON object.
func decodeOrdered(raw json.RawMessage) ([]string, map[string]string, error) {
	dec := jsontext.NewDecoder(bytes.NewBuffer(raw), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, nil, err
	}
	if tok.Kind() != '{' {
		return nil, nil, errors.New("not a JSON object")
	}
	var keys []string
	fields := map[string]string{}
	for dec.PeekKind() != '}' {
		kt, err := dec.ReadToken()
		if err != nil {
			return nil, nil, err
		}
		k := kt.String()
		v, err := dec.ReadValue()
		if err != nil {
			return nil, nil, err
		}
		var s string
		switch v.Kind() {
		case '"':
			// A valid string token: the only error left is invalid UTF-8,
			// replaced with U+FFFD as encoding/json does.
			b, _ := jsontext.AppendUnquote(nil, v)
			s = string(b)
		case 'n':
		default:
			s = strings.TrimSpace(string(v))
		}
		if _, dup := fields[k]; !dup {
			keys = append(keys, k)
		}
		fields[k] = s
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, nil, err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, nil, errors.New("data after the JSON object")
	}
	return keys, fields, nil
}

// encodeOrdered writes a row as a JSON object in column order, the
// row_hash Rails reads: the columns in nulls (empty unquoted cells) are
// null, as row.to_h after Ruby's CSV.parse(headers: true) has them. Strings are quoted by jsontext (no HTML escaping,
// invalid UTF-8 replaced with U+FFFD, as encoding/json does): one
// json.Encoder per key and value was most of the split's CPU.
func encodeOrdered(headers []string, fields map[string]string, nulls []string) (json.RawMessage, error) {
	n := 2
	for _, h := range headers {
		n += len(h) + len(fields[h]) + 6
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, h := range headers {
		if i > 0 {
			b = append(b, ',')
		}
		b, _ = jsontext.AppendQuote(b, h) // the error only reports replaced invalid UTF-8
		b = append(b, ':')
		if len(nulls) > 0 && slices.Contains(nulls, h) {
			b = append(b, "null"...)
			continue
		}
		b, _ = jsontext.AppendQuote(b, fields[h])
	}
	return append(b, '}'), nil
}

// recordRow records one row's result that has no file (a failed row)
// through the row packer, so its reason is kept in storage with the rest
// of the run's rows.
func (p *Pipeline) recordRow(ctx context.Context, token string, r ledger.RowResult) (isNew, last bool, err error) {
	return p.packer.Commit(ctx, token, r, nil)
}

// rowDied records a row job that failed for good as a failed row, so the
// report finishes with it in its manifest instead of waiting for it.
func (p *Pipeline) rowDied(ctx context.Context, job *sidekiq.Job, jobErr error) {
	switch job.HandlerClass() {
	case contract.Row.Name, "ProcessCsvRowJob":
	default:
		return
	}
	args, err := job.Arguments()
	if err != nil || len(args) < 5 {
		return
	}
	var token string
	if unmarshalArg(args[4], &token) != nil {
		return
	}
	queue, err := p.tokenQueue(token)
	if err != nil {
		return
	}
	if why := p.foreignToRun(sidekiq.Entry{Job: job}, token); why != "" {
		// Not a row of that run (wrong arguments, or pushed on another
		// run's queue): it stays in the dead set, out of every run's ledger.
		p.log.Warn("a dead job that is no row of a run", "jid", job.JID, "queue", job.Queue, "why", why)
		return
	}
	var rowNum int
	_, _ = job.Field(contract.FieldRow, &rowNum)
	if rowNum == 0 {
		rowNum = p.knownRubyRowNumber(ctx, token, job.JID)
	}
	isNew, last, err := p.recordRow(ctx, token, ledger.RowResult{Row: rowNum, Key: ledger.RowKey(rowNum, job.JID), Status: "failed", Error: jobErr.Error()})
	if err != nil {
		p.log.Error("record dead row", "token", token, "jid", job.JID, "err", err)
		return
	}
	if isNew {
		p.countRow(ctx, token, 0, 1)
	}
	if last && len(args) >= 3 {
		var typ string
		var reportID int64
		_ = unmarshalArg(args[1], &typ)
		_ = unmarshalArg(args[2], &reportID)
		p.finalizeNow(ctx, queue, token, typ, reportID)
	}
}
