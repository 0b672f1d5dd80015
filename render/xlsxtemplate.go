package render

import (
	"archive/zip"
	"bufio"
	"bytes"
	"cmp"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TemplateLimits bound what an XLSX template may hold, so that preparing it
// (once per run, and once at upload to check it) takes bounded memory and
// time whatever is uploaded. The zero value of a field means its default.
type TemplateLimits struct {
	// MaxBytes caps the .xlsx file. Defaults to 10 MiB.
	MaxBytes int64
	// MaxUncompressedBytes caps all its parts inflated, as the zip declares
	// them (archive/zip stops reading a part at its declared size, so a
	// part cannot inflate past it). Defaults to 64 MiB.
	MaxUncompressedBytes int64
	// MaxCells caps the cells of all sheets. Defaults to 200,000.
	MaxCells int
	// MaxPlaceholders caps the cells holding {{…}} placeholders, which bounds
	// each rendered file (each value is at most 32,767 characters). Defaults to 1,000.
	MaxPlaceholders int
}

// Default template limits.
const (
	DefaultTemplateMaxBytes             = 10 << 20
	DefaultTemplateMaxUncompressedBytes = 64 << 20
	DefaultTemplateMaxCells             = 200_000
	DefaultTemplateMaxPlaceholders      = 1_000
)

// WithDefaults fills zero fields with the defaults.
func (l TemplateLimits) WithDefaults() TemplateLimits {
	l.MaxBytes = cmp.Or(l.MaxBytes, DefaultTemplateMaxBytes)
	l.MaxUncompressedBytes = cmp.Or(l.MaxUncompressedBytes, DefaultTemplateMaxUncompressedBytes)
	l.MaxCells = cmp.Or(l.MaxCells, DefaultTemplateMaxCells)
	l.MaxPlaceholders = cmp.Or(l.MaxPlaceholders, DefaultTemplateMaxPlaceholders)
	return l
}

// Errors of NewXLSXTemplate, wrapped with the detail: ErrTemplateTooBig when
// a limit is passed, ErrBadTemplate when the file is not an XLSX workbook.
var (
	ErrTemplateTooBig = errors.New("xlsx template too big")
	ErrBadTemplate    = errors.New("not an xlsx template")
)

// placeholderRE matches {{name}}, allowing spaces inside the braces.
var placeholderRE = regexp.MustCompile(`\{\{\s*([^{}]+?)\s*\}\}`)

// Standard part names of a workbook (every spreadsheet program writes these).
const (
	partWorkbook      = "xl/workbook.xml"
	partSharedStrings = "xl/sharedStrings.xml"
	partStyles        = "xl/styles.xml"
)

// NewXLSXTemplate checks template, an .xlsx file's bytes, against limits and
// prepares it once. Each rendered file is then the template with every cell
// whose text holds {{column}} placeholders replaced:
//
//   - a cell that is exactly one placeholder gets the column's value typed
//     as Classify says, with the column's [kind] suffix, else the cell's own
//     number format, deciding: a Text format ("@") keeps the value text, a
//     number format reads it as a number (KindNumber), a date format as a
//     date (KindDate). A date in a cell without a date format gets the
//     cell's style with the date format yyyy/mm/dd added;
//   - a cell mixing text and placeholders becomes text;
//   - a placeholder naming no column becomes "" (Placeholders lists them).
//
// The template's own text of those cells is removed from the shared string
// table, so no {{…}} is left in the file's cells. Everything else (styles,
// merged cells, other cells and sheets, formulas, images) is copied as it
// is, already compressed. Placeholders inside formulas, headers and footers
// or drawings are not filled.
func NewXLSXTemplate(template []byte, limits TemplateLimits) (*XLSX, error) {
	t, err := parseTemplate(template, limits.WithDefaults())
	if err != nil {
		return nil, err
	}
	// Not nil, even without placeholders: checkCells tells a template by it.
	placeholders := append([]string{}, t.placeholders...)
	return &XLSX{book: t.book, placeholders: placeholders, now: time.Now}, nil
}

// CheckTemplate reads a template as NewXLSXTemplate does and returns the
// distinct column names of its placeholders, or why it is refused
// (ErrTemplateTooBig, ErrBadTemplate).
func CheckTemplate(template []byte, limits TemplateLimits) ([]string, error) {
	x, err := NewXLSXTemplate(template, limits)
	if err != nil {
		return nil, err
	}
	return x.placeholders, nil
}

type parsedTemplate struct {
	book         *book
	placeholders []string
}

// hole is a template cell that a row fills.
type hole struct {
	ref    string
	prefix string // "" or "x:" when the sheet uses a prefix
	style  int
	text   string // the template's text with its placeholders
	single string // the column name when text is exactly one placeholder
	kind   CellKind
	// styles for a value typed as a number, a date, a date with a time
	numStyle, dateStyle, dateTimeStyle int
	dateOK                             bool // false: dates are written as text (no styles to style them)
}

// templateSheet is a sheet's XML cut at its holes: segs[i], hole i, segs[i+1]…
type templateSheet struct {
	segs  [][]byte
	holes []hole
}

func parseTemplate(data []byte, lim TemplateLimits) (*parsedTemplate, error) {
	if int64(len(data)) > lim.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes (limit %s)", ErrTemplateTooBig, len(data), sizeText(lim.MaxBytes))
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadTemplate, err)
	}
	var total uint64
	files := map[string]*zip.File{}
	for _, f := range zr.File {
		total += f.UncompressedSize64
		if total > uint64(lim.MaxUncompressedBytes) {
			return nil, fmt.Errorf("%w: more than %s uncompressed", ErrTemplateTooBig, sizeText(lim.MaxUncompressedBytes))
		}
		if _, dup := files[f.Name]; dup {
			return nil, fmt.Errorf("%w: part %s twice", ErrBadTemplate, f.Name)
		}
		files[f.Name] = f
	}
	if files[partWorkbook] == nil {
		return nil, fmt.Errorf("%w: no %s", ErrBadTemplate, partWorkbook)
	}
	var sst []sharedString
	var sstRaw []byte
	if f := files[partSharedStrings]; f != nil {
		raw, err := readPart(f)
		if err != nil {
			return nil, err
		}
		sstRaw = raw
		if sst, err = parseSharedStrings(raw); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadTemplate, f.Name, err)
		}
	}
	var styles *templateStyles
	if f := files[partStyles]; f != nil {
		raw, err := readPart(f)
		if err != nil {
			return nil, err
		}
		if styles, err = parseStyles(raw); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadTemplate, f.Name, err)
		}
	}

	t := &parsedTemplate{book: &book{}}
	sheets := map[string]*templateSheet{}
	cells, holes := 0, 0
	for _, f := range zr.File {
		if !isWorksheet(f.Name) {
			continue
		}
		raw, err := readPart(f)
		if err != nil {
			return nil, err
		}
		sh, n, err := parseSheet(raw, sst)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadTemplate, f.Name, err)
		}
		cells += n
		holes += len(sh.holes)
		if cells > lim.MaxCells {
			return nil, fmt.Errorf("%w: more than %d cells", ErrTemplateTooBig, lim.MaxCells)
		}
		if holes > lim.MaxPlaceholders {
			return nil, fmt.Errorf("%w: more than %d cells with placeholders", ErrTemplateTooBig, lim.MaxPlaceholders)
		}
		for _, h := range sh.holes {
			for _, m := range placeholderRE.FindAllStringSubmatch(h.text, -1) {
				if !slices.Contains(t.placeholders, m[1]) {
					t.placeholders = append(t.placeholders, m[1])
				}
			}
		}
		if len(sh.holes) > 0 {
			sheets[f.Name] = sh
		}
	}
	var newStyles []byte
	if styles != nil {
		for _, f := range zr.File { // in part order, so the added styles are the same every time
			if sh := sheets[f.Name]; sh != nil {
				for i := range sh.holes {
					styles.assign(&sh.holes[i])
				}
			}
		}
		newStyles = styles.rewrite()
	}
	for _, f := range zr.File {
		switch {
		case sheets[f.Name] != nil:
			sh := sheets[f.Name]
			t.book.addStamped(f.Name, sh.stamp)
		case f.Name == partSharedStrings && len(sheets) > 0:
			if err := t.book.addStatic(f.Name, cleanSharedStrings(sstRaw, sst)); err != nil {
				return nil, err
			}
		case f.Name == partStyles && newStyles != nil:
			if err := t.book.addStatic(f.Name, newStyles); err != nil {
				return nil, err
			}
		default:
			if err := addTemplatePart(t.book, f); err != nil {
				return nil, err
			}
		}
	}
	return t, nil
}

// sizeText says n bytes the way a person reads a limit: "64 MiB", "1000 bytes".
func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// isWorksheet reports whether name is a worksheet part.
func isWorksheet(name string) bool {
	rest, ok := strings.CutPrefix(name, "xl/worksheets/")
	return ok && !strings.Contains(rest, "/") && strings.HasSuffix(rest, ".xml")
}

func readPart(f *zip.File) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadTemplate, f.Name, err)
	}
	defer rc.Close()
	// The declared size was checked against the limit; archive/zip fails a
	// part that inflates past it.
	b, err := io.ReadAll(io.LimitReader(rc, int64(f.UncompressedSize64)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadTemplate, f.Name, err)
	}
	return b, nil
}

// addTemplatePart copies f into the book still compressed; a stored part
// is deflated once.
func addTemplatePart(b *book, f *zip.File) error {
	if f.Method != zip.Deflate {
		data, err := readPart(f)
		if err != nil {
			return err
		}
		return b.addStatic(f.Name, data)
	}
	rr, err := f.OpenRaw()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadTemplate, f.Name, err)
	}
	raw, err := io.ReadAll(io.LimitReader(rr, int64(f.CompressedSize64)))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadTemplate, f.Name, err)
	}
	// Check it inflates to what it claims, as a full read would.
	if _, err := readPart(f); err != nil {
		return err
	}
	b.addRaw(f.Name, raw, f.CRC32, f.UncompressedSize64)
	return nil
}

// sharedString is one <si> of the shared string table: its text and where it is.
type sharedString struct {
	text       string
	start, end int64
}

func parseSharedStrings(data []byte) ([]sharedString, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	var out []sharedString
	var cur *sharedString
	var text strings.Builder
	inT, inPhonetic := false, 0
	for {
		off := dec.InputOffset()
		tok, err := dec.RawToken()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			switch tk.Name.Local {
			case "si":
				out = append(out, sharedString{start: off})
				cur = &out[len(out)-1]
				text.Reset()
			case "rPh":
				inPhonetic++ // furigana: not the cell's text
			case "t":
				inT = true
			}
		case xml.EndElement:
			switch tk.Name.Local {
			case "si":
				if cur != nil {
					cur.text = text.String()
					cur.end = dec.InputOffset()
					cur = nil
				}
			case "rPh":
				inPhonetic--
			case "t":
				inT = false
			}
		case xml.CharData:
			if inT && inPhonetic == 0 && cur != nil {
				text.Write(tk)
			}
		}
	}
}

// cleanSharedStrings empties the strings that hold placeholders: after
// stamping no cell refers to them, and they would show the template's
// {{…}} to anyone reading the file's parts.
func cleanSharedStrings(data []byte, sst []sharedString) []byte {
	var out bytes.Buffer
	last := int64(0)
	for _, s := range sst {
		if !placeholderRE.MatchString(s.text) {
			continue
		}
		out.Write(data[last:s.start])
		tag := data[s.start+1:]
		prefix := ""
		if i := bytes.IndexAny(tag, " />"); i > 0 {
			prefix = strings.TrimSuffix(string(tag[:i]), "si")
		}
		out.WriteString("<" + prefix + "si><" + prefix + "t></" + prefix + "t></" + prefix + "si>")
		last = s.end
	}
	out.Write(data[last:])
	return out.Bytes()
}

// parseSheet cuts a worksheet at the cells holding placeholders and counts its cells.
func parseSheet(data []byte, sst []sharedString) (*templateSheet, int, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	sh := &templateSheet{}
	cells, rowNum, col := 0, 0, 0
	last := int64(0)
	for {
		off := dec.InputOffset()
		tok, err := dec.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch se.Name.Local {
		case "row":
			rowNum++
			if r, err := strconv.Atoi(attr(se, "r")); err == nil && r > 0 {
				rowNum = r
			}
			col = 0
		case "c":
			cells++
			col++
			ref := attr(se, "r")
			if c, _, ok := splitRef(ref); ok {
				col = c
			} else {
				ref = cellRef(col, rowNum)
			}
			typ := attr(se, "t")
			style, _ := strconv.Atoi(attr(se, "s"))
			v, isText, formula, err := readCell(dec)
			if err != nil {
				return nil, 0, err
			}
			end := dec.InputOffset()
			text := ""
			switch {
			case formula:
				continue // formulas are kept as they are
			case typ == "s":
				i, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil || i < 0 || i >= len(sst) {
					continue
				}
				text = sst[i].text
			case typ == "inlineStr" && isText:
				text = v
			default:
				continue
			}
			if !placeholderRE.MatchString(text) {
				continue
			}
			h := hole{ref: ref, style: style, text: text, prefix: se.Name.Space}
			if h.prefix != "" {
				h.prefix += ":"
			}
			if m := placeholderRE.FindStringSubmatchIndex(text); m[0] == 0 && m[1] == len(text) {
				h.single = text[m[2]:m[3]]
			}
			h.numStyle, h.dateStyle, h.dateTimeStyle = style, style, style
			sh.segs = append(sh.segs, data[last:off])
			sh.holes = append(sh.holes, h)
			last = end
		}
	}
	sh.segs = append(sh.segs, data[last:])
	return sh, cells, nil
}

// readCell reads a <c> element's content up to its end: the text of <v> or
// of the <t>s of <is> (furigana left out), and whether it has a formula.
func readCell(dec *xml.Decoder) (v string, isText, formula bool, err error) {
	depth, inV, inT, inPhonetic := 1, false, false, 0
	var b strings.Builder
	for depth > 0 {
		tok, err := dec.RawToken()
		if err != nil {
			return "", false, false, err
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			depth++
			switch tk.Name.Local {
			case "v":
				inV = true
			case "t":
				inT, isText = true, true
			case "rPh":
				inPhonetic++
			case "f":
				formula = true
			}
		case xml.EndElement:
			depth--
			switch tk.Name.Local {
			case "v":
				inV = false
			case "t":
				inT = false
			case "rPh":
				inPhonetic--
			}
		case xml.CharData:
			if inV || inT && inPhonetic == 0 {
				b.Write(tk)
			}
		}
	}
	return b.String(), isText, formula, nil
}

func attr(se xml.StartElement, name string) string {
	for _, a := range se.Attr {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// splitRef splits "AB12" into column 28 and row 12.
func splitRef(ref string) (col, row int, ok bool) {
	i := 0
	for i < len(ref) && ref[i] >= 'A' && ref[i] <= 'Z' {
		col = col*26 + int(ref[i]-'A'+1)
		i++
	}
	if i == 0 || i == len(ref) || col > 16384 {
		return 0, 0, false
	}
	row, err := strconv.Atoi(ref[i:])
	if err != nil || row < 1 {
		return 0, 0, false
	}
	return col, row, true
}

// stamp writes the sheet for row.
func (sh *templateSheet) stamp(w *bufio.Writer, row Row) error {
	values := templateValues(row)
	for i, h := range sh.holes {
		w.Write(sh.segs[i])
		var c Cell
		if h.single != "" {
			v := values[h.single]
			kind := cmp.Or(v.kind, h.kind)
			c = Classify(v.value, kind)
			if c.Kind == KindDate && !h.dateOK {
				c = Cell{Kind: KindText, Text: c.Text}
			}
		} else {
			c = Cell{Kind: KindText, Text: placeholderRE.ReplaceAllStringFunc(h.text, func(m string) string {
				return values[placeholderRE.FindStringSubmatch(m)[1]].value
			})}
		}
		writeCell(w, h.prefix, h.ref, h.style, c, h.numStyle, h.dateStyle, h.dateTimeStyle)
	}
	w.Write(sh.segs[len(sh.segs)-1])
	return nil
}

type columnValue struct {
	value string
	kind  CellKind
}

// templateValues maps each column, by its header and by its name without a
// [kind] suffix, to its value and kind.
func templateValues(row Row) map[string]columnValue {
	m := make(map[string]columnValue, len(row.Fields)+4)
	for h, v := range row.Fields {
		name, kind := ColumnKind(h)
		m[h] = columnValue{v, kind}
		if name != h {
			if _, taken := row.Fields[name]; !taken {
				m[name] = columnValue{v, kind}
			}
		}
	}
	return m
}
