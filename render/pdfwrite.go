package render

import (
	"bytes"
	"strconv"
	"sync"

	"github.com/klauspost/compress/zlib"
)

// pdfDoc is one file being drawn: its pages' content streams and the glyphs
// they use. Glyphs get subset ids in the order they are first drawn (0 is
// .notdef), so content is written once, as it is laid out.
type pdfDoc struct {
	f     *sfntFont
	pages [][]byte
	cur   int
	order []uint16          // original glyph by subset id
	ids   map[uint16]uint16 // original glyph to subset id
	uni   []rune            // the character each subset id was drawn for
	runes []rune
	sub   subsetBuilder
	out   bytes.Buffer
	tmp   []byte
}

func (d *pdfDoc) reset(f *sfntFont) {
	d.f = f
	for i := range d.pages {
		d.pages[i] = d.pages[i][:0]
	}
	d.pages = d.pages[:0]
	d.cur = 0
	clear(d.ids)
	d.order = append(d.order[:0], 0)
	d.uni = append(d.uni[:0], 0)
	d.ids[0] = 0
}

func (d *pdfDoc) newPage() {
	if len(d.pages) < cap(d.pages) {
		d.pages = d.pages[:len(d.pages)+1]
	} else {
		d.pages = append(d.pages, make([]byte, 0, 4096))
	}
	d.cur = len(d.pages) - 1
}

// glyph returns r's glyph and the character it stands for: '?' when the font lacks r.
func (d *pdfDoc) glyph(r rune) (uint16, rune) {
	if g := d.f.glyph(r); g != 0 {
		return g, r
	}
	return d.f.glyph('?'), '?'
}

// measure returns the width of text at size in points, as gopdf's MeasureTextWidth did.
func (d *pdfDoc) measure(text string, size float64) float64 {
	sum := 0
	for _, r := range text {
		g, _ := d.glyph(r)
		sum += d.f.pdfWidth(g)
	}
	return float64(sum) * (size / 1000.0)
}

// split breaks text (no line breaks in it) into lines no wider than width,
// between any two characters: gopdf's SplitText in its strict mode, which
// the pages drawn so far followed. A character wider than the line still
// gets a line of its own.
func (d *pdfDoc) split(text string, width, size float64) []string {
	var lines []string
	if text == "" {
		return lines
	}
	start, sum := 0, 0
	for i, r := range text {
		g, _ := d.glyph(r)
		w := d.f.pdfWidth(g)
		if i > start && float64(sum)*(size/1000.0)+float64(w)*(size/1000.0) > width {
			lines = append(lines, text[start:i])
			start, sum = i, 0
		}
		sum += w
	}
	return append(lines, text[start:])
}

// typoAscent is the OS/2 typographic ascender at size, in points: gopdf put
// a cell's baseline that far below its top.
func (d *pdfDoc) typoAscent(size float64) float64 {
	return float64(d.f.typoAsc) * 1000.00 / float64(d.f.upem) * size / 1000.0
}

// text draws s with its top left corner at x, y (from the page's top left).
func (d *pdfDoc) text(x, y, size float64, s string) {
	if s == "" {
		return
	}
	c := d.pages[d.cur]
	c = append(c, "BT\n"...)
	c = appendNum(c, x, 2)
	c = append(c, ' ')
	c = appendNum(c, pageH-y-d.typoAscent(size), 2)
	c = append(c, " TD\n/F1 "...)
	c = strconv.AppendFloat(c, size, 'f', -1, 64)
	c = append(c, " Tf 0 Tc\n[<"...)
	for _, r := range s {
		g, cr := d.glyph(r)
		id, ok := d.ids[g]
		if !ok {
			id = uint16(len(d.order))
			d.ids[g] = id
			d.order = append(d.order, g)
			d.uni = append(d.uni, cr)
		}
		c = appendHex4(c, id)
	}
	c = append(c, ">] TJ\nET\n"...)
	d.pages[d.cur] = c
}

// cellBoxes draws a table row's two cells: the name's filled grey, both
// stroked grey; then the fill is black again for the text.
func (d *pdfDoc) cellBoxes(x, y, labelW, valueW, h float64) {
	c := d.pages[d.cur]
	c = append(c, "0.50 w\n0.627 0.627 0.627 RG\n0.922 0.922 0.922 rg\nq\n"...)
	c = appendRect(c, x, y, labelW, h)
	c = append(c, " re B\nQ\nq\n"...)
	c = appendRect(c, x+labelW, y, valueW, h)
	c = append(c, " re S\nQ\n0.000 0.000 0.000 rg\n"...)
	d.pages[d.cur] = c
}

func (d *pdfDoc) fillBlack() {
	d.pages[d.cur] = append(d.pages[d.cur], "0.000 0.000 0.000 rg\n"...)
}

func appendRect(c []byte, x, y, w, h float64) []byte {
	c = appendNum(c, x, 2)
	c = append(c, ' ')
	c = appendNum(c, pageH-y-h, 2)
	c = append(c, ' ')
	c = appendNum(c, w, 2)
	c = append(c, ' ')
	return appendNum(c, h, 2)
}

func appendNum(c []byte, v float64, prec int) []byte {
	return strconv.AppendFloat(c, v, 'f', prec, 64)
}

const hexDigits = "0123456789ABCDEF"

func appendHex4(c []byte, v uint16) []byte {
	return append(c, hexDigits[v>>12], hexDigits[v>>8&15], hexDigits[v>>4&15], hexDigits[v&15])
}

// Object numbers: the fixed objects first, then each page and its content.
const (
	objCatalog = 1 + iota
	objPages
	objFont
	objCIDFont
	objDescriptor
	objFontFile
	objToUnicode
	objInfo
	objFirstPage
)

// write assembles the file and returns it (valid until the next render with d).
func (d *pdfDoc) write(fontName string, number int) []byte {
	f := d.f
	font := d.sub.build(f, &d.order, d.ids) // may add composite glyphs' components to order
	for len(d.uni) < len(d.order) {
		d.uni = append(d.uni, 0)
	}
	b := &d.out
	b.Reset()
	var offsets []int
	obj := func(n int) {
		for len(offsets) < n {
			offsets = append(offsets, 0)
		}
		offsets[n-1] = b.Len()
		b.WriteString(strconv.Itoa(n))
		b.WriteString(" 0 obj\n")
	}
	b.WriteString("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")

	obj(objCatalog)
	b.WriteString("<< /Type /Catalog /Pages 2 0 R >>\nendobj\n")
	obj(objPages)
	b.WriteString("<< /Type /Pages /MediaBox [0 0 595 842] /Count ")
	b.WriteString(strconv.Itoa(len(d.pages)))
	b.WriteString(" /Kids [")
	for i := range d.pages {
		b.WriteString(strconv.Itoa(objFirstPage + 2*i))
		b.WriteString(" 0 R ")
	}
	b.WriteString("] >>\nendobj\n")

	obj(objFont)
	b.WriteString("<< /Type /Font /Subtype /Type0 /BaseFont /" + fontName +
		" /Encoding /Identity-H /DescendantFonts [4 0 R] /ToUnicode 7 0 R >>\nendobj\n")
	obj(objCIDFont)
	b.WriteString("<< /Type /Font /Subtype /CIDFontType2 /BaseFont /" + fontName +
		" /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> /FontDescriptor 5 0 R /CIDToGIDMap /Identity /W [0 [")
	d.tmp = d.tmp[:0]
	for i, g := range d.order {
		if i > 0 {
			d.tmp = append(d.tmp, ' ')
		}
		d.tmp = strconv.AppendInt(d.tmp, int64(f.pdfWidth(g)), 10)
	}
	b.Write(d.tmp)
	b.WriteString("]] >>\nendobj\n")
	obj(objDescriptor)
	d.tmp = append(d.tmp[:0], "<< /Type /FontDescriptor /FontName /"...)
	d.tmp = append(d.tmp, fontName...)
	d.tmp = append(d.tmp, " /Flags 32 /FontBBox ["...)
	for i, v := range [...]int{f.xMin, f.yMin, f.xMax, f.yMax} {
		if i > 0 {
			d.tmp = append(d.tmp, ' ')
		}
		d.tmp = strconv.AppendInt(d.tmp, int64(f.pdfUnits(v)), 10)
	}
	d.tmp = append(d.tmp, ']')
	asc, desc := f.ascender, f.descender
	if f.typoAsc != 0 {
		asc = f.winAsc
	}
	if f.typoDesc != 0 {
		desc = -f.winDesc
	}
	for _, kv := range [...]struct {
		k string
		v int
	}{{"Ascent", asc}, {"Descent", desc}, {"CapHeight", f.capHeight}, {"XHeight", f.xHeight}} {
		d.tmp = append(d.tmp, " /"+kv.k+" "...)
		d.tmp = strconv.AppendInt(d.tmp, int64(f.pdfUnits(kv.v)), 10)
	}
	d.tmp = append(d.tmp, " /ItalicAngle 0 /StemV 0 /FontFile2 6 0 R >>\nendobj\n"...)
	b.Write(d.tmp)

	obj(objFontFile)
	writeFlateStream(b, font, " /Length1 "+strconv.Itoa(len(font)))
	obj(objToUnicode)
	writeFlateStream(b, d.toUnicode(), "")
	obj(objInfo)
	b.WriteString("<< /Title (Report row " + strconv.Itoa(number) + ") /Producer (pallarel) >>\nendobj\n")

	for i, c := range d.pages {
		obj(objFirstPage + 2*i)
		b.WriteString("<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 3 0 R >> >> /Contents ")
		b.WriteString(strconv.Itoa(objFirstPage + 2*i + 1))
		b.WriteString(" 0 R >>\nendobj\n")
		obj(objFirstPage + 2*i + 1)
		writeFlateStream(b, c, "")
	}

	xref := b.Len()
	b.WriteString("xref\n0 ")
	b.WriteString(strconv.Itoa(len(offsets) + 1))
	b.WriteString("\n0000000000 65535 f \n")
	for _, off := range offsets {
		d.tmp = strconv.AppendInt(d.tmp[:0], int64(off), 10)
		for range 10 - len(d.tmp) {
			b.WriteByte('0')
		}
		b.Write(d.tmp)
		b.WriteString(" 00000 n \n")
	}
	b.WriteString("trailer\n<< /Size ")
	b.WriteString(strconv.Itoa(len(offsets) + 1))
	b.WriteString(" /Root 1 0 R /Info 8 0 R >>\nstartxref\n")
	b.WriteString(strconv.Itoa(xref))
	b.WriteString("\n%%EOF\n")
	return b.Bytes()
}

// toUnicode is the CMap from subset ids to the characters they were drawn for.
func (d *pdfDoc) toUnicode() []byte {
	c := append(d.tmp[:0], "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"+
		"/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"+
		"/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"+
		"1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"...)
	var ids []int
	for id, r := range d.uni {
		if r != 0 {
			ids = append(ids, id)
		}
	}
	for len(ids) > 0 {
		n := min(len(ids), 100) // at most 100 entries a block
		c = strconv.AppendInt(c, int64(n), 10)
		c = append(c, " beginbfchar\n"...)
		for _, id := range ids[:n] {
			c = append(c, '<')
			c = appendHex4(c, uint16(id))
			c = append(c, "> <"...)
			r := d.uni[id]
			if r < 0x10000 {
				c = appendHex4(c, uint16(r))
			} else {
				r -= 0x10000
				c = appendHex4(c, uint16(0xd800+r>>10))
				c = appendHex4(c, uint16(0xdc00+r&0x3ff))
			}
			c = append(c, ">\n"...)
		}
		c = append(c, "endbfchar\n"...)
		ids = ids[n:]
	}
	c = append(c, "endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n"...)
	d.tmp = c
	return c
}

// zlibPool holds deflaters; making one allocates its whole window.
var zlibPool = sync.Pool{New: func() any {
	w, _ := zlib.NewWriterLevel(nil, pdfDeflateLevel)
	return w
}}

// pdfDeflateLevel: level 3 deflates a one-page file's ~12 KB in a third of
// the default level's time, for 0.3% more bytes (bench/RESULTS.md).
const pdfDeflateLevel = 3

// writeFlateStream writes raw deflated as a stream object's body.
func writeFlateStream(b *bytes.Buffer, raw []byte, extra string) {
	z := bufPool.Get().(*bytes.Buffer)
	z.Reset()
	zw := zlibPool.Get().(*zlib.Writer)
	zw.Reset(z)
	zw.Write(raw) // a bytes.Buffer does not fail
	zw.Close()
	zlibPool.Put(zw)
	b.WriteString("<< /Filter /FlateDecode /Length ")
	b.WriteString(strconv.Itoa(z.Len()))
	b.WriteString(extra)
	b.WriteString(" >>\nstream\n")
	b.Write(z.Bytes())
	b.WriteString("\nendstream\nendobj\n")
	bufPool.Put(z)
}
