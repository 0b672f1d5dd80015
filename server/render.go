package server

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

//go:embed templates
var templateFS embed.FS

// pageData is what every page template gets.
type pageData struct {
	Lang  locale
	Title string
	CSRF  string // the forms' hidden authenticity_token value
	// LoggedIn shows the logout button (a browser session is open).
	LoggedIn bool
	Nav      string // active dashboard tab
	Data     any
}

var templateFuncs = template.FuncMap{
	"pct": func(done, total int64) float64 {
		if total <= 0 {
			return 0
		}
		return float64(done) * 100 / float64(total)
	},
	"time": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"ptime": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"unix": func(f float64) string {
		if f == 0 {
			return ""
		}
		return time.Unix(int64(f), 0).UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"join": strings.Join,
	// dur shows seconds as 1h02m03s, 2m05s or 7s.
	"dur": func(secs *float64) string {
		if secs == nil {
			return ""
		}
		return (time.Duration(*secs) * time.Second).String()
	},
	"f1":  func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"add": func(a, b int) int { return a + b },
	"sub": func(a, b int) int { return a - b },
}

// parsePages parses each page template together with the layout.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := make(map[string]*template.Template)
	for _, n := range names {
		base := strings.TrimPrefix(n, "templates/")
		if base == "layout.html" {
			continue
		}
		t, err := template.New(base).Funcs(templateFuncs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", base, err)
		}
		pages[base] = t
	}
	return pages, nil
}

// render executes page into a buffer first, so a template error becomes a
// clean 500 rather than half a page.
func (s *Server) render(c *gin.Context, status int, page string, d pageData) {
	t, ok := s.pages[page]
	if d.CSRF == "" {
		d.CSRF = c.GetString(csrfCtxKey)
	}
	d.LoggedIn = c.GetBool(sessionCtxKey)
	var buf bytes.Buffer
	if !ok {
		s.log.Error("render: no such page", "page", page)
		c.String(http.StatusInternalServerError, "internal error")
		return
	}
	if err := t.ExecuteTemplate(&buf, "layout", d); err != nil {
		s.log.Error("render page", "page", page, "err", err)
		c.String(http.StatusInternalServerError, "internal error")
		return
	}
	c.Header("Content-Language", d.Lang.Code)
	c.Data(status, "text/html; charset=utf-8", addNonce(buf.Bytes(), c.GetString(nonceCtxKey)))
}

// wantsJSON reports whether the client asked for JSON: Accept lists
// application/json and not text/html, or ?format=json.
func wantsJSON(c *gin.Context) bool {
	if f := c.Query("format"); f != "" {
		return f == "json"
	}
	acc := c.GetHeader("Accept")
	return strings.Contains(acc, "application/json") && !strings.Contains(acc, "text/html")
}
