// Package render turns one CSV row into one report file.
//
// A Renderer writes one row to an io.Writer in its format: XLSX (default
// two-column layout or a user template with {{column}} placeholders), PDF
// with an embedded Japanese TrueType font, plain text, or a one-row CSV.
// A Registry maps the report type the Rails app sends ("xlsx", "pdf", …) to a
// Renderer, and FileName gives each row a safe, unique file name.
//
// Renderers are safe for concurrent use: the worker renders many rows at once.
package render

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
)

// Row is one CSV data row as the Rails app sends it (row_hash) plus its position.
type Row struct {
	// Number is the 1-based data row number.
	Number int
	// Headers is the column order of the CSV; Fields keys not listed here are rendered after them, sorted.
	Headers []string
	// Fields maps column name to value.
	Fields map[string]string
}

// Columns returns the names to render in order: Headers, then any other Fields keys sorted.
func (r Row) Columns() []string {
	cols := make([]string, 0, max(len(r.Headers), len(r.Fields)))
	// Rows have a few dozen columns at most: a linear look-up costs less
	// than a map made for every row (this runs once a row).
	var seen map[string]bool
	if len(r.Headers) > 32 {
		seen = make(map[string]bool, len(r.Headers))
	}
	has := func(h string) bool {
		if seen != nil {
			return seen[h]
		}
		return slices.Contains(cols, h)
	}
	for _, h := range r.Headers {
		if !has(h) {
			if seen != nil {
				seen[h] = true
			}
			cols = append(cols, h)
		}
	}
	if len(r.Fields) == len(cols) && r.fieldsAll(cols) {
		return cols // no field beyond the headers
	}
	var extra []string
	for k := range r.Fields {
		if !has(k) {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	return append(cols, extra...)
}

// fieldsAll reports whether every one of cols is a key of r.Fields.
func (r Row) fieldsAll(cols []string) bool {
	for _, c := range cols {
		if _, ok := r.Fields[c]; !ok {
			return false
		}
	}
	return true
}

// Renderer writes one row as one file.
type Renderer interface {
	// Name is the report type it serves, e.g. "xlsx", "pdf", "text".
	Name() string
	// Ext is the file extension including the dot, e.g. ".xlsx".
	Ext() string
	// Render writes the file for row to w.
	Render(ctx context.Context, w io.Writer, row Row) error
}

// ErrUnknownRenderer is returned (wrapped) by Registry.Get for a name nobody registered.
var ErrUnknownRenderer = errors.New("unknown renderer")

// Registry maps renderer names to renderers. It is safe for concurrent use.
type Registry struct {
	mu        sync.RWMutex
	renderers map[string]Renderer
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{renderers: make(map[string]Renderer)}
}

// Register adds r under r.Name(). A second renderer with the same name is an error,
// so a wiring mistake shows at start-up.
func (reg *Registry) Register(r Renderer) error {
	if r == nil {
		return errors.New("register renderer: nil")
	}
	name := r.Name()
	if name == "" {
		return errors.New("register renderer: empty name")
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if _, dup := reg.renderers[name]; dup {
		return fmt.Errorf("register renderer %q: already registered", name)
	}
	reg.renderers[name] = r
	return nil
}

// Get returns the renderer registered under name, or an error wrapping ErrUnknownRenderer.
func (reg *Registry) Get(name string) (Renderer, error) {
	reg.mu.RLock()
	defer reg.mu.RUnlock()
	r, ok := reg.renderers[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (have %v)", ErrUnknownRenderer, name, reg.namesLocked())
	}
	return r, nil
}

// Names returns the registered names, sorted.
func (reg *Registry) Names() []string {
	reg.mu.RLock()
	defer reg.mu.RUnlock()
	return reg.namesLocked()
}

func (reg *Registry) namesLocked() []string {
	names := make([]string, 0, len(reg.renderers))
	for n := range reg.renderers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
