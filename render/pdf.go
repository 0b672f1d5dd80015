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

// PDF renders a row as an A4 PDF: the title "Report row N", then one
// "header: value" paragraph per column, wrapped at the right margin (at any
// character, as Japanese text needs) and continued on new pages as needed.
// The font is embedded as a subset. Characters the font lacks print as "?".
type PDF struct {
	fonts    *gopdf.FontContainer // parsed once, shared by every render
	fontPath string
	size     float64
}

var _ Renderer = (*PDF)(nil)

const (
	pdfFamily   = "cjk"
	pdfMargin   = 50.0
	titleSize   = 16.0
	lineSpacing = 1.4
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

func (p *PDF) build(ctx context.Context, row Row) (*gopdf.GoPdf, error) {
	doc := &gopdf.GoPdf{}
	page := *gopdf.PageSizeA4
	doc.Start(gopdf.Config{PageSize: page})
	doc.SetInfo(gopdf.PdfInfo{Title: "Report row " + strconv.Itoa(row.Number), Producer: "pallarel"})
	if err := doc.AddTTFFontFromFontContainer(pdfFamily, p.fonts); err != nil {
		return nil, fmt.Errorf("add font: %w", err)
	}
	doc.AddPage()
	width := page.W - 2*pdfMargin
	y := pdfMargin

	// line prints one already-wrapped line, starting a new page when the bottom margin is reached.
	line := func(text string, size float64) error {
		if y+size*lineSpacing > page.H-pdfMargin {
			doc.AddPage()
			y = pdfMargin
		}
		doc.SetXY(pdfMargin, y)
		if err := doc.Text(text); err != nil {
			return err
		}
		y += size * lineSpacing
		return nil
	}
	// paragraph wraps text at the margin, keeping the value's own line breaks.
	paragraph := func(text string, size float64) error {
		if err := doc.SetFont(pdfFamily, "", size); err != nil {
			return err
		}
		for _, src := range strings.Split(cleanPDFText(text), "\n") {
			parts := []string{""}
			if src != "" {
				var err error
				if parts, err = doc.SplitText(src, width); err != nil {
					return fmt.Errorf("wrap text: %w", err)
				}
			}
			for _, part := range parts {
				if err := line(part, size); err != nil {
					return err
				}
			}
		}
		return nil
	}

	if err := paragraph("Report row "+strconv.Itoa(row.Number), titleSize); err != nil {
		return nil, err
	}
	y += p.size
	for _, col := range row.Columns() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := paragraph(col+": "+row.Fields[col], p.size); err != nil {
			return nil, fmt.Errorf("column %q: %w", col, err)
		}
	}
	return doc, nil
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
