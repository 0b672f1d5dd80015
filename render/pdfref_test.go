package render

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pallarel/pallarel/internal/pdftest"
)

// TestPDFMatchesGopdfPages draws the reference rows and compares each page,
// pixel by pixel, with the page the gopdf-based renderer drew for the same
// row (testdata/pdfref-*.png, pdftoppm -r 100 -gray): same layout, line
// breaks and glyphs. A pixel differs when its grey level is off by more than
// 48 of 255; a text line one pixel off moves thousands.
func TestPDFMatchesGopdfPages(t *testing.T) {
	t.Parallel()
	p := newTestPDF(t)
	if filepath.Base(p.FontPath()) != "ipag.ttf" {
		t.Fatalf("the reference pages were drawn with IPA Gothic (fonts-ipafont-gothic), not %s", p.FontPath())
	}
	for name, row := range pdfRefRows() {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := p.Render(context.Background(), &buf, row); err != nil {
				t.Fatal(err)
			}
			imgs, files := pdftest.Render(t, buf.Bytes(), 100)
			refs, _ := filepath.Glob("testdata/pdfref-" + name + "-*.png")
			if len(refs) == 0 || len(imgs) != len(refs) {
				t.Fatalf("%d pages, the reference has %d", len(imgs), len(refs))
			}
			for i, img := range imgs {
				ref := readPNG(t, fmt.Sprintf("testdata/pdfref-%s-%d.png", name, i+1))
				diff, total := pageDiff(img, ref)
				// At most 0.05% of the page's pixels (~480 at 100 dpi).
				if diff*2000 > total {
					t.Errorf("page %d: %d of %d pixels differ from the reference (%s)", i+1, diff, total, files[i])
				}
			}
		})
	}
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return img
}

// pageDiff counts the pixels whose grey levels differ by more than 48; a
// page of another size differs everywhere.
func pageDiff(a, b image.Image) (diff, total int) {
	ab, bb := a.Bounds(), b.Bounds()
	total = max(ab.Dx()*ab.Dy(), 1)
	if ab.Size() != bb.Size() {
		return total, total
	}
	for y := range ab.Dy() {
		for x := range ab.Dx() {
			ga := color.GrayModel.Convert(a.At(ab.Min.X+x, ab.Min.Y+y)).(color.Gray).Y
			gb := color.GrayModel.Convert(b.At(bb.Min.X+x, bb.Min.Y+y)).(color.Gray).Y
			if d := int(ga) - int(gb); d > 48 || d < -48 {
				diff++
			}
		}
	}
	return diff, total
}

// TestPDFEmbeddedSubset checks with poppler's pdffonts that the one font is
// embedded, a subset, and has a ToUnicode map, and that a one-page file is
// small (the subset holds the row's glyphs only).
func TestPDFEmbeddedSubset(t *testing.T) {
	t.Parallel()
	p := newTestPDF(t)
	var buf bytes.Buffer
	if err := p.Render(context.Background(), &buf, pdfRefRows()["one"]); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "row.pdf")
	if err := os.WriteFile(in, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pdffonts", in).CombinedOutput()
	if err != nil {
		t.Fatalf("pdffonts (apt-get install poppler-utils): %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 {
		t.Fatalf("pdffonts lists %d fonts, want 1:\n%s", len(lines)-2, out)
	}
	f := strings.Fields(lines[2])
	// name, "CID", "TrueType", encoding, emb, sub, uni, object, generation
	if len(f) != 9 || !strings.Contains(f[0], "+") || f[1] != "CID" || f[3] != "Identity-H" || f[4] != "yes" || f[5] != "yes" || f[6] != "yes" {
		t.Errorf("font is not an embedded CID TrueType subset with ToUnicode:\n%s", out)
	}
	if buf.Len() > 10<<10 {
		t.Errorf("a one-page file is %d bytes, want at most 10 KB", buf.Len())
	}
}

// TestPDFCompositeGlyphs renders with a font whose accented letters are
// composite glyphs (DejaVu Sans): the subset must carry the components,
// renumbered, or "é" draws as nothing.
func TestPDFCompositeGlyphs(t *testing.T) {
	t.Parallel()
	const font = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
	p, err := NewPDF(PDFOptions{FontPath: font})
	if err != nil {
		t.Fatalf("NewPDF (install the Debian package fonts-dejavu-core): %v", err)
	}
	if g := p.font.glyph('é'); len(p.font.glyphs[g].comps) == 0 {
		t.Fatalf("é is not a composite glyph in %s", font)
	}
	ink := func(text string) int {
		var buf bytes.Buffer
		if err := p.Render(context.Background(), &buf, Row{Number: 1, Headers: []string{"a"}, Fields: map[string]string{"a": text}}); err != nil {
			t.Fatal(err)
		}
		if got := pdftest.Text(t, buf.Bytes()); !strings.Contains(got, text) {
			t.Errorf("text %q lacks %q", got, text)
		}
		imgs, _ := pdftest.Render(t, buf.Bytes(), 100)
		n := 0
		b := imgs[0].Bounds()
		for y := 90; y < 140; y++ { // the first table row, below the title
			for x := b.Dx() / 3; x < b.Dx()-60; x++ {
				if color.GrayModel.Convert(imgs[0].At(x, y)).(color.Gray).Y < 128 {
					n++
				}
			}
		}
		return n
	}
	plain, accented := ink("eeeeeeeeee"), ink("éééééééééé")
	if plain == 0 || accented < plain+20 {
		t.Errorf("ink of eeeeeeeeee %d px, of éééééééééé %d px: the accents are missing", plain, accented)
	}
}
