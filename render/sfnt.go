package render

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// sfntFont is a TrueType font read once per renderer, indexed for subsetting:
// a rune's glyph and width are a slice look-up, and each glyph's outline is
// kept ready to copy into a row's subset.
//
// Outlines are kept without their hinting instructions (about half of IPA
// Gothic's glyph bytes), and subsets carry no fpgm/prep/cvt: viewers draw
// the same outlines unhinted, as poppler, pdf.js and PDFium do by default,
// and a one-page file stays a third of its size.
type sfntFont struct {
	upem                   int
	xMin, yMin, xMax, yMax int
	ascender, descender    int // hhea
	typoAsc, typoDesc      int // OS/2
	winAsc, winDesc        int // OS/2
	capHeight, xHeight     int
	head, hhea, maxp       []byte // copied and patched into each subset
	advance                []uint16
	lsb                    []int16
	glyphs                 []sfntGlyph
	bmp                    []uint16 // rune (< 0x10000) to glyph; 0 is missing
	astral                 map[rune]uint16
}

// sfntGlyph is one outline: its bytes without instructions and, for a
// composite, where in them each component's glyph index sits.
type sfntGlyph struct {
	data  []byte
	comps []int
}

var errBadFont = errors.New("not a TrueType font")

// parseSFNT reads a .ttf. CFF-flavoured OpenType and collections are refused.
func parseSFNT(data []byte) (*sfntFont, error) {
	if len(data) < 12 {
		return nil, fmt.Errorf("%w: %d bytes", errBadFont, len(data))
	}
	switch v := binary.BigEndian.Uint32(data); v {
	case 0x00010000, 0x74727565: // 1.0, "true"
	case 0x4f54544f: // "OTTO"
		return nil, fmt.Errorf("%w: CFF-based OpenType outlines", errBadFont)
	case 0x74746366: // "ttcf"
		return nil, fmt.Errorf("%w: a font collection (.ttc)", errBadFont)
	default:
		return nil, fmt.Errorf("%w: sfnt version %#x", errBadFont, v)
	}
	n := int(binary.BigEndian.Uint16(data[4:]))
	if len(data) < 12+16*n {
		return nil, fmt.Errorf("%w: truncated table directory", errBadFont)
	}
	tables := make(map[string][]byte, n)
	for i := range n {
		e := data[12+16*i:]
		off, ln := int(binary.BigEndian.Uint32(e[8:])), int(binary.BigEndian.Uint32(e[12:]))
		if off < 0 || ln < 0 || off > len(data) || ln > len(data)-off {
			return nil, fmt.Errorf("%w: table %q outside the file", errBadFont, e[:4])
		}
		tables[string(e[:4])] = data[off : off+ln]
	}
	need := map[string]int{"head": 54, "hhea": 36, "maxp": 6, "hmtx": 0, "loca": 0, "glyf": 0, "cmap": 4}
	for tag, min := range need {
		if t, ok := tables[tag]; !ok || len(t) < min {
			return nil, fmt.Errorf("%w: no usable %q table (a TrueType font with glyf outlines is required)", errBadFont, tag)
		}
	}
	f := &sfntFont{head: tables["head"], hhea: tables["hhea"], maxp: tables["maxp"]}
	be := binary.BigEndian
	f.upem = int(be.Uint16(f.head[18:]))
	if f.upem == 0 {
		return nil, fmt.Errorf("%w: unitsPerEm is 0", errBadFont)
	}
	f.xMin, f.yMin = int(int16(be.Uint16(f.head[36:]))), int(int16(be.Uint16(f.head[38:])))
	f.xMax, f.yMax = int(int16(be.Uint16(f.head[40:]))), int(int16(be.Uint16(f.head[42:])))
	longLoca := be.Uint16(f.head[50:]) != 0
	f.ascender = int(int16(be.Uint16(f.hhea[4:])))
	f.descender = int(int16(be.Uint16(f.hhea[6:])))
	f.capHeight = f.ascender
	numH := int(be.Uint16(f.hhea[34:]))
	numGlyphs := int(be.Uint16(f.maxp[4:]))
	if os2 := tables["OS/2"]; len(os2) >= 78 {
		f.typoAsc, f.typoDesc = int(int16(be.Uint16(os2[68:]))), int(int16(be.Uint16(os2[70:])))
		f.winAsc, f.winDesc = int(be.Uint16(os2[74:])), int(be.Uint16(os2[76:]))
		if be.Uint16(os2) >= 2 && len(os2) >= 90 {
			f.xHeight = int(int16(be.Uint16(os2[86:])))
			f.capHeight = int(int16(be.Uint16(os2[88:])))
		}
	}
	if numH == 0 || numGlyphs == 0 || numH > numGlyphs {
		return nil, fmt.Errorf("%w: %d glyphs, %d horizontal metrics", errBadFont, numGlyphs, numH)
	}
	hmtx := tables["hmtx"]
	if len(hmtx) < 4*numH+2*(numGlyphs-numH) {
		return nil, fmt.Errorf("%w: hmtx too short for %d glyphs", errBadFont, numGlyphs)
	}
	f.advance = make([]uint16, numGlyphs)
	f.lsb = make([]int16, numGlyphs)
	for g := range numGlyphs {
		if g < numH {
			f.advance[g], f.lsb[g] = be.Uint16(hmtx[4*g:]), int16(be.Uint16(hmtx[4*g+2:]))
		} else {
			f.advance[g], f.lsb[g] = f.advance[numH-1], int16(be.Uint16(hmtx[4*numH+2*(g-numH):]))
		}
	}
	if err := f.readGlyphs(tables["loca"], tables["glyf"], numGlyphs, longLoca); err != nil {
		return nil, err
	}
	if err := f.readCmap(tables["cmap"]); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *sfntFont) readGlyphs(loca, glyf []byte, numGlyphs int, long bool) error {
	be := binary.BigEndian
	offset := func(i int) int {
		if long {
			return int(be.Uint32(loca[4*i:]))
		}
		return 2 * int(be.Uint16(loca[2*i:]))
	}
	if w := map[bool]int{true: 4, false: 2}[long]; len(loca) < w*(numGlyphs+1) {
		return fmt.Errorf("%w: loca too short for %d glyphs", errBadFont, numGlyphs)
	}
	f.glyphs = make([]sfntGlyph, numGlyphs)
	// One buffer holds every stripped outline: a few MB for a CJK font, once.
	buf := make([]byte, 0, len(glyf))
	for g := range numGlyphs {
		a, b := offset(g), offset(g+1)
		if a >= b {
			continue
		}
		if b > len(glyf) {
			return fmt.Errorf("%w: glyph %d outside glyf", errBadFont, g)
		}
		start := len(buf)
		var comps []int
		var err error
		buf, comps, err = appendStripped(buf, glyf[a:b])
		if err != nil {
			return fmt.Errorf("%w: glyph %d: %v", errBadFont, g, err)
		}
		f.glyphs[g] = sfntGlyph{data: buf[start:len(buf):len(buf)], comps: comps}
	}
	return nil
}

// appendStripped appends glyph g without its instructions, and returns the
// offsets of a composite's component glyph indexes.
func appendStripped(dst, g []byte) ([]byte, []int, error) {
	be := binary.BigEndian
	if len(g) < 10 {
		return nil, nil, errors.New("header truncated")
	}
	contours := int(int16(be.Uint16(g)))
	if contours >= 0 {
		p := 10 + 2*contours
		if len(g) < p+2 {
			return nil, nil, errors.New("contours truncated")
		}
		il := int(be.Uint16(g[p:]))
		if len(g) < p+2+il {
			return nil, nil, errors.New("instructions truncated")
		}
		dst = append(dst, g[:p]...)
		dst = append(dst, 0, 0)
		return append(dst, g[p+2+il:]...), nil, nil
	}
	start := len(dst)
	var comps []int
	p := 10
	for {
		if len(g) < p+4 {
			return nil, nil, errors.New("component truncated")
		}
		flags := be.Uint16(g[p:])
		comps = append(comps, p+2)
		q := p + 4
		if flags&0x0001 != 0 { // ARG_1_AND_2_ARE_WORDS
			q += 4
		} else {
			q += 2
		}
		switch {
		case flags&0x0008 != 0: // WE_HAVE_A_SCALE
			q += 2
		case flags&0x0040 != 0: // WE_HAVE_AN_X_AND_Y_SCALE
			q += 4
		case flags&0x0080 != 0: // WE_HAVE_A_TWO_BY_TWO
			q += 8
		}
		if len(g) < q {
			return nil, nil, errors.New("component truncated")
		}
		p = q
		if flags&0x0020 == 0 { // no MORE_COMPONENTS
			break
		}
	}
	dst = append(dst, g[:p]...)
	// Clear WE_HAVE_INSTRUCTIONS on the last component: the instructions are dropped.
	last := start + comps[len(comps)-1] - 2
	be.PutUint16(dst[last:], be.Uint16(dst[last:])&^0x0100)
	return dst, comps, nil
}

// readCmap fills the rune look-up from the Unicode subtables (format 4 and 12).
func (f *sfntFont) readCmap(cmap []byte) error {
	be := binary.BigEndian
	f.bmp = make([]uint16, 0x10000)
	f.astral = make(map[rune]uint16)
	n := int(be.Uint16(cmap[2:]))
	if len(cmap) < 4+8*n {
		return fmt.Errorf("%w: cmap truncated", errBadFont)
	}
	set := func(r rune, g int) {
		if g <= 0 || g >= len(f.glyphs) || r < 0 || r > unicode10FFFF {
			return
		}
		if r < 0x10000 {
			if f.bmp[r] == 0 {
				f.bmp[r] = uint16(g)
			}
		} else if _, ok := f.astral[r]; !ok {
			f.astral[r] = uint16(g)
		}
	}
	found := false
	for i := range n {
		rec := cmap[4+8*i:]
		platform, encoding := be.Uint16(rec), be.Uint16(rec[2:])
		unicode := platform == 0 || platform == 3 && (encoding == 1 || encoding == 10)
		off := int(be.Uint32(rec[4:]))
		if !unicode || off+4 > len(cmap) {
			continue
		}
		t := cmap[off:]
		switch be.Uint16(t) {
		case 4:
			if len(t) < 14 {
				continue
			}
			segs := int(be.Uint16(t[6:])) / 2
			if len(t) < 16+8*segs {
				continue
			}
			ends, starts, deltas, ranges := t[14:], t[16+2*segs:], t[16+4*segs:], t[16+6*segs:]
			for s := range segs {
				end, start := int(be.Uint16(ends[2*s:])), int(be.Uint16(starts[2*s:]))
				delta, ro := int(be.Uint16(deltas[2*s:])), int(be.Uint16(ranges[2*s:]))
				for c := start; c <= end && c != 0xffff; c++ {
					if ro == 0 {
						set(rune(c), (c+delta)&0xffff)
						continue
					}
					p := 16 + 6*segs + 2*s + ro + 2*(c-start)
					if p+2 > len(t) {
						break
					}
					if g := int(be.Uint16(t[p:])); g != 0 {
						set(rune(c), (g+delta)&0xffff)
					}
				}
			}
			found = true
		case 12:
			if len(t) < 16 {
				continue
			}
			groups := int(be.Uint32(t[12:]))
			if groups < 0 || groups > (len(t)-16)/12 {
				continue
			}
			for k := range groups {
				gr := t[16+12*k:]
				first, last, g := int64(be.Uint32(gr)), int64(be.Uint32(gr[4:])), int64(be.Uint32(gr[8:]))
				if last > unicode10FFFF || first > last {
					continue
				}
				for c := first; c <= last; c++ {
					set(rune(c), int(g+c-first))
				}
			}
			found = true
		}
	}
	if !found {
		return fmt.Errorf("%w: no Unicode cmap (format 4 or 12)", errBadFont)
	}
	return nil
}

const unicode10FFFF = 0x10ffff

// glyph returns r's glyph, 0 when the font lacks it.
func (f *sfntFont) glyph(r rune) uint16 {
	if r >= 0 && r < 0x10000 {
		return f.bmp[r]
	}
	return f.astral[r]
}

// pdfWidth is glyph g's advance in thousandths of the font size, truncated
// (as gopdf measured it, so lines break where they did).
func (f *sfntFont) pdfWidth(g uint16) int {
	return int(f.advance[g]) * 1000 / f.upem
}

// pdfUnits converts font units to thousandths of the font size, rounded.
func (f *sfntFont) pdfUnits(v int) int {
	return int(math.Round(float64(v) * 1000 / float64(f.upem)))
}

// subsetBuilder assembles one file's font program; it is reused through a pool.
type subsetBuilder struct {
	out  []byte
	glyf []byte
	loca []byte
	hmtx []byte
}

// build writes a TrueType font holding the glyphs of order, in that order
// (order[0] is .notdef). Components of composite glyphs are appended to
// order (and to ids, which maps an original glyph to its place in order).
func (b *subsetBuilder) build(f *sfntFont, order *[]uint16, ids map[uint16]uint16) []byte {
	be := binary.BigEndian
	b.glyf, b.loca, b.hmtx = b.glyf[:0], b.loca[:0], b.hmtx[:0]
	for i := 0; i < len(*order); i++ {
		g := f.glyphs[(*order)[i]]
		b.loca = be.AppendUint32(b.loca, uint32(len(b.glyf)))
		start := len(b.glyf)
		b.glyf = append(b.glyf, g.data...)
		for _, c := range g.comps {
			orig := be.Uint16(g.data[c:])
			if int(orig) >= len(f.glyphs) {
				orig = 0
			}
			id, ok := ids[orig]
			if !ok {
				id = uint16(len(*order))
				ids[orig] = id
				*order = append(*order, orig)
			}
			be.PutUint16(b.glyf[start+c:], id)
		}
		for len(b.glyf)%4 != 0 {
			b.glyf = append(b.glyf, 0)
		}
		gid := (*order)[i]
		b.hmtx = be.AppendUint16(b.hmtx, f.advance[gid])
		b.hmtx = be.AppendUint16(b.hmtx, uint16(f.lsb[gid]))
	}
	b.loca = be.AppendUint32(b.loca, uint32(len(b.glyf)))
	n := uint16(len(*order))

	type table struct {
		tag  string
		data []byte
	}
	tables := [...]table{ // sorted by tag, as the directory must be
		{"glyf", b.glyf},
		{"head", f.head},
		{"hhea", f.hhea},
		{"hmtx", b.hmtx},
		{"loca", b.loca},
		{"maxp", f.maxp},
	}
	const dir = 12 + 16*len(tables)
	out := slices.Grow(b.out[:0], dir+len(b.glyf)+len(b.loca)+len(b.hmtx)+256)
	out = be.AppendUint32(out, 0x00010000)
	out = be.AppendUint16(out, uint16(len(tables)))
	out = append(out, 0, 64, 0, 2, 0, 32) // searchRange 64, entrySelector 2, rangeShift 32 (6 tables)
	out = append(out, make([]byte, 16*len(tables))...)
	for i, t := range tables {
		off := len(out)
		out = append(out, t.data...)
		switch t.tag {
		case "head":
			be.PutUint32(out[off+8:], 0)  // checkSumAdjustment, left 0
			be.PutUint16(out[off+50:], 1) // long loca
		case "hhea":
			be.PutUint16(out[off+34:], n)
		case "maxp":
			be.PutUint16(out[off+4:], n)
		}
		e := out[12+16*i:]
		copy(e, t.tag)
		be.PutUint32(e[4:], sfntChecksum(out[off:]))
		be.PutUint32(e[8:], uint32(off))
		be.PutUint32(e[12:], uint32(len(t.data)))
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
	}
	b.out = out
	return out
}

func sfntChecksum(b []byte) uint32 {
	var sum uint32
	for len(b) >= 4 {
		sum += binary.BigEndian.Uint32(b)
		b = b[4:]
	}
	var last [4]byte
	copy(last[:], b)
	return sum + binary.BigEndian.Uint32(last[:])
}
