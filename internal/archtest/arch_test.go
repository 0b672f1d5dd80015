// Package archtest checks the import graph and the key names against the
// design (README, "Packages"): it holds tests only.
package archtest

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/pallarel/pallarel"

// root is the module's directory.
func root(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// deps lists the module's packages each of pkgs depends on, directly or
// not (go list -deps), by package.
func deps(t *testing.T, pkgs ...string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, p := range pkgs {
		b, err := exec.Command("go", "list", "-deps", "-json=ImportPath", module+"/"+p).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", p, err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		for dec.More() {
			var pk struct{ ImportPath string }
			if err := dec.Decode(&pk); err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(pk.ImportPath, module+"/") && pk.ImportPath != module+"/"+p {
				out[p] = append(out[p], strings.TrimPrefix(pk.ImportPath, module+"/"))
			}
		}
	}
	return out
}

// The arrows the design forbids: the web side and retention never reach
// the job handlers, the run's parts never reach back into jobs, and the
// contract imports nothing of ours.
func TestImportGraph(t *testing.T) {
	all := deps(t, "server", "retention", "run/webhook", "run/monitor", "run/lease", "run/retry", "run/counts", "run/dataloss", "ledger", "contract")
	if !strings.Contains(strings.Join(all["server"], " "), "contract") {
		t.Fatalf("server's dependencies read as %v: the listing is broken", all["server"])
	}
	for pkg, ds := range all {
		for _, d := range ds {
			if d == "jobs" {
				t.Errorf("%s depends on jobs", pkg)
			}
			if pkg == "contract" {
				t.Errorf("contract depends on %s: it imports nothing of ours", d)
			}
		}
	}
}

// keyLiteral is a Redis key of ours spelled as a literal.
var keyLiteral = regexp.MustCompile(`^pallarel:[a-z]`)

// Every pallarel:* key is spelled in contract (the application's) or in
// sidekiq/internal/rdb (the engine's), nowhere else: other code calls
// their builders.
func TestKeysSpelledInOnePlace(t *testing.T) {
	dir := root(t)
	allowed := []string{"contract", filepath.Join("sidekiq", "internal", "rdb")}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || rel == "bench" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		for _, a := range allowed {
			if filepath.Dir(rel) == a {
				return nil
			}
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, src, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && keyLiteral.MatchString(s) {
					t.Errorf("%s: the key %q is spelled outside contract and sidekiq/internal/rdb", rel, s)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
