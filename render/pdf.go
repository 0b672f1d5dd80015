package render

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/signintech/gopdf"
)

// DefaultFontPaths are tried in order when PDFOptions.FontPath is empty.
// gopdf embeds TrueType (glyf) fonts only, not TTC collections or CFF-based
// OpenType, so each entry is a .ttf; the Debian package that ships it is named
// beside it. fonts-ipafont-gothic installs its .ttf under "opentype".
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
// The font file is read and parsed once, when the renderer is made, and
// every file embeds only the subset of glyphs it uses (each row is a file of
// its own, so each carries its subset). Characters the font lacks print as "?".
type PDF struct {
	fonts    *gopdf.FontContainer // parsed once, shared by every render
	fontPath string
	size     float64
}

var _ Renderer = (*PDF)(nil)

const (
	pdfFamily   = "cjk"
	pdfMargin   = 40.0
	titleSize   = 16.0
	lineSpacing = 1.4
	cellPad     = 4.0
	footerSize  = 9.0
)

// NewPDF loads and parses the font. A missing font is an error naming every path tried.
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
	fonts := &gopdf.FontContainer{}
	opt := gopdf.TtfOption{OnGlyphNotFoundSubstitute: func(rune) rune { return '?' }}
	if err := fonts.AddTTFFontDataWithOption(pdfFamily, data, opt); err != nil {
		return nil, fmt.Errorf("load font %s (a TrueType .ttf is required): %w", used, err)
	}
	size := opts.FontSize
	if size <= 0 {
		size = 10.5
	}
	return &PDF{fonts: fonts, fontPath: used, size: size}, nil
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
	doc, err := p.build(ctx, row)
	if err != nil {
		return fmt.Errorf("render pdf row %d: %w", row.Number, err)
	}
	// gopdf drops some write errors, so the writer remembers the first one.
	ew := &errWriter{w: w}
	if _, err := doc.WriteTo(ew); err != nil {
		return fmt.Errorf("write pdf row %d: %w", row.Number, err)
	}
	if ew.err != nil {
		return fmt.Errorf("write pdf row %d: %w", row.Number, ew.err)
	}
	return nil
}

// errWriter keeps the first write error and fails every later write.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

// pdfLayout draws one row's pages.
type pdfLayout struct {
	doc            *gopdf.GoPdf
	page           gopdf.Rect
	size, lh       float64
	labelW, valueW float64
	y              float64
	pages          int
}

func (p *PDF) build(ctx context.Context, row Row) (*gopdf.GoPdf, error) {
	doc := &gopdf.GoPdf{}
	page := *gopdf.PageSizeA4
	doc.Start(gopdf.Config{PageSize: page})
	doc.SetInfo(gopdf.PdfInfo{Title: "Report row " + strconv.Itoa(row.Number), Producer: "pallarel"})
	if err := doc.AddTTFFontFromFontContainer(pdfFamily, p.fonts); err != nil {
		return nil, fmt.Errorf("add font: %w", err)
	}
	width := page.W - 2*pdfMargin
	l := &pdfLayout{doc: doc, page: page, size: p.size, lh: p.size * lineSpacing}
	// The name column is as wide as the widest name, within a quarter to
	// two fifths of the width.
	if err := doc.SetFont(pdfFamily, "", p.size); err != nil {
		return nil, err
	}
	cols := row.Columns()
	names := make([]string, len(cols))
	widest := 0.0
	for i, c := range cols {
		names[i], _ = ColumnKind(c)
		names[i] = cleanPDFText(names[i])
		if w, err := doc.MeasureTextWidth(names[i]); err == nil {
			widest = max(widest, w)
		}
	}
	l.labelW = min(max(widest+2*cellPad+1, width/4), width*2/5)
	l.valueW = width - l.labelW

	l.newPage()
	if err := doc.SetFont(pdfFamily, "", titleSize); err != nil {
		return nil, err
	}
	title, err := doc.SplitText("Report row "+strconv.Itoa(row.Number), width)
	if err != nil {
		return nil, fmt.Errorf("wrap title: %w", err)
	}
	for _, t := range title {
		doc.SetXY(pdfMargin, l.y)
		if err := doc.Cell(nil, t); err != nil {
			return nil, err
		}
		l.y += titleSize * lineSpacing
	}
	l.y += l.size / 2
	if err := doc.SetFont(pdfFamily, "", p.size); err != nil {
		return nil, err
	}
	for i, col := range cols {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := l.tableRow(names[i], row.Fields[col]); err != nil {
			return nil, fmt.Errorf("column %q: %w", col, err)
		}
	}
	if l.pages > 1 {
		if err := l.pageNumbers(); err != nil {
			return nil, err
		}
	}
	return doc, nil
}

func (l *pdfLayout) newPage() {
	l.doc.AddPage()
	l.pages++
	l.y = pdfMargin
}

// bottom is the lowest y the table may reach (room is kept for the page number).
func (l *pdfLayout) bottom() float64 { return l.page.H - pdfMargin - footerSize*2 }

// wrap splits text into lines that fit width, keeping its own line breaks.
func (l *pdfLayout) wrap(text string, width float64) ([]string, error) {
	var out []string
	for _, src := range strings.Split(cleanPDFText(text), "\n") {
		if src == "" {
			out = append(out, "")
			continue
		}
		parts, err := l.doc.SplitText(src, width-2*cellPad)
		if err != nil {
			return nil, fmt.Errorf("wrap text: %w", err)
		}
		out = append(out, parts...)
	}
	return out, nil
}

// tableRow draws one column's name and value, over pages when it must.
func (l *pdfLayout) tableRow(name, value string) error {
	labels, err := l.wrap(name, l.labelW)
	if err != nil {
		return err
	}
	values, err := l.wrap(value, l.valueW)
	if err != nil {
		return err
	}
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
		l.doc.SetLineWidth(0.5)
		l.doc.SetStrokeColor(160, 160, 160)
		l.doc.SetFillColor(235, 235, 235)
		l.doc.RectFromUpperLeftWithStyle(x, l.y, l.labelW, h, "FD")
		l.doc.RectFromUpperLeftWithStyle(x+l.labelW, l.y, l.valueW, h, "D")
		// gopdf fills text with the fill colour: back to black for the text.
		l.doc.SetFillColor(0, 0, 0)
		l.doc.SetTextColor(0, 0, 0)
		// The name is drawn on the first part and again on each page the value goes on to.
		part := labels
		if done > 0 {
			part = labels[:min(1, len(labels))]
		}
		for i := 0; i < n && i < len(part); i++ {
			l.doc.SetXY(x+cellPad, l.y+cellPad+float64(i)*l.lh+(l.lh-l.size)/2)
			if err := l.doc.Cell(nil, part[i]); err != nil {
				return err
			}
		}
		for i := 0; i < n && done+i < len(values); i++ {
			l.doc.SetXY(x+l.labelW+cellPad, l.y+cellPad+float64(i)*l.lh+(l.lh-l.size)/2)
			if err := l.doc.Cell(nil, values[done+i]); err != nil {
				return err
			}
		}
		done += n
		l.y += h
		if done < lines {
			l.newPage()
		}
	}
	return nil
}

// pageNumbers writes "i / n" at the foot of every page.
func (l *pdfLayout) pageNumbers() error {
	if err := l.doc.SetFont(pdfFamily, "", footerSize); err != nil {
		return err
	}
	for i := 1; i <= l.pages; i++ {
		if err := l.doc.SetPage(i); err != nil {
			return err
		}
		l.doc.SetFillColor(0, 0, 0)
		l.doc.SetTextColor(0, 0, 0)
		text := strconv.Itoa(i) + " / " + strconv.Itoa(l.pages)
		w, err := l.doc.MeasureTextWidth(text)
		if err != nil {
			return err
		}
		l.doc.SetXY((l.page.W-w)/2, l.page.H-pdfMargin-footerSize)
		if err := l.doc.Cell(nil, text); err != nil {
			return err
		}
	}
	return nil
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
