package render

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// templateStyles is a template's styles.xml, read enough to know each cell
// style's number format and to add date variants of styles.
type templateStyles struct {
	data   []byte
	prefix string

	numFmts     map[int]string // custom formats by id
	numFmtsElem element        // zero when the part has none
	afterRoot   int64          // where a new <numFmts> goes: after <styleSheet …>
	xfs         []xfEntry      // cellXfs
	xfsElem     element

	addedFmts []string       // numFmt elements to add
	addedXfs  []string       // xf elements to add
	fmtIDs    map[string]int // formatCode → id, added ones
	variants  map[[2]int]int // {style, numFmtId} → new style
}

// element is where an element is in the part: [start, end) in all, its
// start tag ends at tagEnd and its end tag starts at closeStart (equal to
// end when it is self-closing).
type element struct {
	start, tagEnd, closeStart, end int64
	found                          bool
}

type xfEntry struct {
	raw      string // the whole <xf …>…</xf>
	numFmtID int
}

func parseStyles(data []byte) (*templateStyles, error) {
	st := &templateStyles{data: data, numFmts: map[int]string{}, fmtIDs: map[string]int{}, variants: map[[2]int]int{}}
	dec := xml.NewDecoder(bytes.NewReader(data))
	var stack []string
	var xfStart int64 = -1
	xfFmt := 0
	for {
		off := dec.InputOffset()
		tok, err := dec.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			parent := ""
			if len(stack) > 0 {
				parent = stack[len(stack)-1]
			}
			stack = append(stack, tk.Name.Local)
			switch {
			case len(stack) == 1:
				st.afterRoot = dec.InputOffset()
				if tk.Name.Space != "" {
					st.prefix = tk.Name.Space + ":"
				}
			case tk.Name.Local == "numFmts" && len(stack) == 2:
				st.numFmtsElem = element{start: off, tagEnd: dec.InputOffset(), found: true}
			case tk.Name.Local == "numFmt" && parent == "numFmts":
				id, err := strconv.Atoi(attr(tk, "numFmtId"))
				if err == nil {
					st.numFmts[id] = attr(tk, "formatCode")
				}
			case tk.Name.Local == "cellXfs" && len(stack) == 2:
				st.xfsElem = element{start: off, tagEnd: dec.InputOffset(), found: true}
			case tk.Name.Local == "xf" && parent == "cellXfs":
				xfStart = off
				xfFmt, _ = strconv.Atoi(attr(tk, "numFmtId"))
			}
		case xml.EndElement:
			if len(stack) == 0 {
				return nil, errors.New("unbalanced end tag")
			}
			name := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			end := dec.InputOffset()
			switch {
			case name == "numFmts" && len(stack) == 1:
				st.numFmtsElem.closeStart, st.numFmtsElem.end = off, end
			case name == "cellXfs" && len(stack) == 1:
				st.xfsElem.closeStart, st.xfsElem.end = off, end
			case name == "xf" && len(stack) == 2 && stack[1] == "cellXfs" && xfStart >= 0:
				st.xfs = append(st.xfs, xfEntry{raw: string(data[xfStart:end]), numFmtID: xfFmt})
				xfStart = -1
			}
		}
	}
	if !st.xfsElem.found {
		return nil, errors.New("no cellXfs")
	}
	return st, nil
}

type fmtClass int

const (
	fmtGeneral fmtClass = iota
	fmtNumber
	fmtDate
	fmtText
)

// class says what kind of value a number format shows.
func (st *templateStyles) class(id int) fmtClass {
	if code, ok := st.numFmts[id]; ok {
		return classifyFormat(code)
	}
	switch {
	case id == 0:
		return fmtGeneral
	case id == 49:
		return fmtText
	case id >= 14 && id <= 22, id >= 27 && id <= 36, id >= 45 && id <= 47, id >= 50 && id <= 58:
		return fmtDate
	default:
		return fmtNumber
	}
}

var formatNoiseRE = regexp.MustCompile(`"[^"]*"|\[[^\]]*\]|\\.|_.|\*.`)

// classifyFormat reads a custom format code: text when it shows "@", a date
// when it has date or time letters, a number when it has digit placeholders.
func classifyFormat(code string) fmtClass {
	if strings.EqualFold(code, "General") {
		return fmtGeneral
	}
	c := strings.ToLower(formatNoiseRE.ReplaceAllString(code, ""))
	switch {
	case strings.Contains(c, "@"):
		return fmtText
	case strings.ContainsAny(c, "ymdhsg"):
		return fmtDate
	case strings.ContainsAny(c, "0#?"):
		return fmtNumber
	default:
		return fmtGeneral
	}
}

// assign sets a hole's kind and the styles of its typed values from its
// cell style.
func (st *templateStyles) assign(h *hole) {
	if h.style < 0 || h.style >= len(st.xfs) {
		return // a style the part lacks: typed values keep it, dates stay text
	}
	switch st.class(st.xfs[h.style].numFmtID) {
	case fmtText:
		h.kind = KindText
	case fmtNumber:
		h.kind = KindNumber
	case fmtDate:
		h.kind, h.dateOK = KindDate, true
		return // dates keep the cell's own date format
	}
	h.dateStyle = st.variant(h.style, dateFormat)
	h.dateTimeStyle = st.variant(h.style, dateTimeFormat)
	h.dateOK = true
}

var numFmtAttrRE = regexp.MustCompile(`\s(numFmtId|applyNumberFormat)="[^"]*"`)

// variant returns a style like style but showing code, adding it once.
func (st *templateStyles) variant(style int, code string) int {
	id, ok := st.fmtIDs[code]
	if !ok {
		id = 164
		for used := range st.numFmts {
			id = max(id, used+1)
		}
		id += len(st.addedFmts)
		st.fmtIDs[code] = id
		st.addedFmts = append(st.addedFmts, `<`+st.prefix+`numFmt numFmtId="`+strconv.Itoa(id)+`" formatCode="`+code+`"/>`)
	}
	key := [2]int{style, id}
	if v, ok := st.variants[key]; ok {
		return v
	}
	raw := numFmtAttrRE.ReplaceAllString(st.xfs[style].raw, "")
	tag := "<" + st.prefix + "xf"
	raw = tag + ` numFmtId="` + strconv.Itoa(id) + `" applyNumberFormat="1"` + strings.TrimPrefix(raw, tag)
	v := len(st.xfs) + len(st.addedXfs)
	st.addedXfs = append(st.addedXfs, raw)
	st.variants[key] = v
	return v
}

// rewrite returns styles.xml with the added formats and styles, or nil
// when nothing was added.
func (st *templateStyles) rewrite() []byte {
	if len(st.addedXfs) == 0 {
		return nil
	}
	d := st.data
	var out bytes.Buffer
	p := st.prefix
	inner := func(e element) []byte {
		if e.closeStart == e.end { // self-closing
			return nil
		}
		return d[e.tagEnd:e.closeStart]
	}
	numFmts := func() {
		out.WriteString(`<` + p + `numFmts count="` + strconv.Itoa(len(st.numFmts)+len(st.addedFmts)) + `">`)
		if st.numFmtsElem.found {
			out.Write(inner(st.numFmtsElem))
		}
		out.WriteString(strings.Join(st.addedFmts, ""))
		out.WriteString(`</` + p + `numFmts>`)
	}
	if st.numFmtsElem.found {
		out.Write(d[:st.numFmtsElem.start])
		numFmts()
		out.Write(d[st.numFmtsElem.end:st.xfsElem.start])
	} else {
		out.Write(d[:st.afterRoot])
		numFmts()
		out.Write(d[st.afterRoot:st.xfsElem.start])
	}
	out.WriteString(`<` + p + `cellXfs count="` + strconv.Itoa(len(st.xfs)+len(st.addedXfs)) + `">`)
	out.Write(inner(st.xfsElem))
	out.WriteString(strings.Join(st.addedXfs, ""))
	out.WriteString(`</` + p + `cellXfs>`)
	out.Write(d[st.xfsElem.end:])
	return out.Bytes()
}
