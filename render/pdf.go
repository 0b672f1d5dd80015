package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// DefaultFontPaths are tried in order when PDFOptions.FontPath is empty.
// The renderer embeds TrueType (glyf) fonts only, not TTC collections or
// CFF-based OpenType, so each entry is a .ttf; the Debian package that ships
// it is named beside it. fonts-ipafont-gothic installs its .ttf under "opentype".
var DefaultFontPaths = []string{
	"/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",        // fonts-ipafont-gothic
	"/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf",    // fonts-ipaexfont-gothic
	"/usr/share/fonts/truetype/vlgothic/VL-Gothic-Regular.ttf", // fonts-vlgothic
	"/usr/share/fonts/truetype/takao-gothic/TakaoGothic.ttf",   // fonts-takao-gothic
	"/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",      // Debian alternatives link
}

// ErrNoFont is returned (wrapped) by NewPDF when no usable font file exists.
var ErrNoFont = errors.New("no CJK TrueType font found")

// PDFOptions configures the PDF renderer.
type PDFOptions struct {
	// FontPath is a TrueType (.ttf) font with Japanese glyphs. Defaults to the
	// first existing file of DefaultFontPaths.
	FontPath string
	// FontSize is the body size in points. Defaults to 10.5.
	FontSize float64
}

// PDF renders a row as an A4 page (more when the row is long): the title
// "Report row N", then a two-column table with one line per column, the
// column name on grey in the left column and its value in the right one.
// Text wraps at any character, as Japanese needs; a table row that does not
// fit the rest of a page starts on the next one, and one longer than a page
// goes on over pages (its name repeated). Pages are numbered "i / n" at the
// bottom when there are more than one.
//
// The font file is read and indexed once, when the renderer is made, and
// every file embeds only the subset of glyphs it uses (each row is a file of
// its own, so each carries its subset), with a ToUnicode map so its text can
// be searched and copied. Characters the font lacks print as "?".
//
// The page is the one the gopdf-based renderer drew (same metrics, line
// breaks and drawing operators; render/testdata holds its pages), written
// directly: that renderer spent most of a row's CPU deflating a subset that
// kept the whole font's loca and hmtx tables.
type PDF struct {
	font     *sfntFont // indexed once, shared by every render
	fontName string    // BaseFont, a subset tag and the file's name
	fontPath string
	size     float64
	docs     sync.Pool // *pdfDoc
}

var _ Renderer = (*PDF)(nil)

const (
	pdfMargin   = 40.0
	titleSize   = 16.0
	lineSpacing = 1.4
	cellPad     = 4.0
	footerSize  = 9.0
	pageW       = 595.0 // A4, as gopdf.PageSizeA4
	pageH       = 842.0
)

// NewPDF loads and indexes the font. A missing font is an error naming every path tried.
func NewPDF(opts PDFOptions) (*PDF, error) {
	paths := DefaultFontPaths
	if opts.FontPath != "" {
		paths = []string{opts.FontPath}
	}
	var data []byte
	var used string
	var tried []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			tried = append(tried, p)
			continue
		}
		data, used = b, p
		break
	}
	if data == nil {
		return nil, fmt.Errorf("%w: tried %s (install fonts-ipafont-gothic or set the font path)", ErrNoFont, strings.Join(tried, ", "))
	}
	font, err := parseSFNT(data)
	if err != nil {
		return nil, fmt.Errorf("load font %s (a TrueType .ttf is required): %w", used, err)
	}
	if font.glyph('?') == 0 {
		return nil, fmt.Errorf("load font %s: it has no glyph for '?', which stands in for missing characters", used)
	}
	size := opts.FontSize
	if size <= 0 {
		size = 10.5
	}
	return &PDF{font: font, fontName: subsetFontName(used), fontPath: used, size: size}, nil
}

// subsetFontName is "PLRLSB+" and the font file's base name in PostScript name characters.
func subsetFontName(path string) string {
	base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return -1
	}, base)
	if name == "" {
		name = "cjk"
	}
	return "PLRLSB+" + name
}

// FontPath returns the font file in use.
func (p *PDF) FontPath() string { return p.fontPath }

// Name returns "pdf".
func (*PDF) Name() string { return "pdf" }

// Ext returns ".pdf".
func (*PDF) Ext() string { return ".pdf" }

// Render writes the PDF for row to w.
func (p *PDF) Render(ctx context.Context, w io.Writer, row Row) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d, _ := p.docs.Get().(*pdfDoc)
	if d == nil {
		d = &pdfDoc{ids: make(map[uint16]uint16)}
	}
	defer p.docs.Put(d)
	d.reset(p.font)
	if err := p.layout(ctx, d, row); err != nil {
		return fmt.Errorf("render pdf row %d: %w", row.Number, err)
	}
	out := d.write(p.fontName, row.Number)
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("write pdf row %d: %w", row.Number, err)
	}
	return nil
}

// pdfLayout draws one row's pages.
type pdfLayout struct {
	d              *pdfDoc
	size, lh       float64
	labelW, valueW float64
	y              float64
}

func (p *PDF) layout(ctx context.Context, d *pdfDoc, row Row) error {
	width := pageW - 2*pdfMargin
	l := &pdfLayout{d: d, size: p.size, lh: p.size * lineSpacing}
	// The name column is as wide as the widest name, within a quarter to
	// two fifths of the width.
	cols := row.Columns()
	names := make([]string, len(cols))
	widest := 0.0
	for i, c := range cols {
		names[i], _ = ColumnKind(c)
		names[i] = cleanPDFText(names[i])
		widest = max(widest, d.measure(names[i], p.size))
	}
	l.labelW = min(max(widest+2*cellPad+1, width/4), width*2/5)
	l.valueW = width - l.labelW

	l.newPage()
	for _, t := range d.split("Report row "+strconv.Itoa(row.Number), width, titleSize) {
		d.text(pdfMargin, l.y, titleSize, t)
		l.y += titleSize * lineSpacing
	}
	l.y += l.size / 2
	for i, col := range cols {
		if err := ctx.Err(); err != nil {
			return err
		}
		l.tableRow(names[i], row.Fields[col])
	}
	if n := len(d.pages); n > 1 {
		for i := range n {
			d.cur = i
			d.fillBlack()
			text := strconv.Itoa(i+1) + " / " + strconv.Itoa(n)
			d.text((pageW-d.measure(text, footerSize))/2, pageH-pdfMargin-footerSize, footerSize, text)
		}
	}
	return nil
}

func (l *pdfLayout) newPage() {
	l.d.newPage()
	l.y = pdfMargin
}

// bottom is the lowest y the table may reach (room is kept for the page number).
func (l *pdfLayout) bottom() float64 { return pageH - pdfMargin - footerSize*2 }

// wrap splits text into lines that fit width, keeping its own line breaks.
func (l *pdfLayout) wrap(text string, width float64) []string {
	var out []string
	for _, src := range strings.Split(cleanPDFText(text), "\n") {
		if src == "" {
			out = append(out, "")
			continue
		}
		out = append(out, l.d.split(src, width-2*cellPad, l.size)...)
	}
	return out
}

// tableRow draws one column's name and value, over pages when it must.
func (l *pdfLayout) tableRow(name, value string) {
	labels := l.wrap(name, l.labelW)
	values := l.wrap(value, l.valueW)
	lines := max(len(labels), len(values))
	perPage := int((l.bottom() - pdfMargin - 2*cellPad) / l.lh)
	fits := func() int { return int((l.bottom() - l.y - 2*cellPad) / l.lh) }
	// A row that would fit a page of its own is not split.
	if lines <= perPage && fits() < lines || fits() < 1 {
		l.newPage()
	}
	for done := 0; done < lines; {
		n := min(lines-done, fits())
		if n < 1 {
			l.newPage()
			continue
		}
		h := float64(n)*l.lh + 2*cellPad
		x := pdfMargin
		l.d.cellBoxes(x, l.y, l.labelW, l.valueW, h)
		// The name is drawn on the first part and again on each page the value goes on to.
		part := labels
		if done > 0 {
			part = labels[:min(1, len(labels))]
		}
		for i := 0; i < n && i < len(part); i++ {
			l.d.text(x+cellPad, l.y+cellPad+float64(i)*l.lh+(l.lh-l.size)/2, l.size, part[i])
		}
		for i := 0; i < n && done+i < len(values); i++ {
			l.d.text(x+l.labelW+cellPad, l.y+cellPad+float64(i)*l.lh+(l.lh-l.size)/2, l.size, values[done+i])
		}
		done += n
		l.y += h
		if done < lines {
			l.newPage()
		}
	}
}

// cleanPDFText normalises line breaks and turns other control characters into spaces.
func cleanPDFText(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.Map(func(r rune) rune {
		if r == '\n' {
			return r
		}
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

// bufPool holds the buffers a file is assembled in.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
