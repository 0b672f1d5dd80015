package contract_test

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pallarel/pallarel/contract"
)

const module = "github.com/pallarel/pallarel"

// keyLiteral is a Go string literal that starts a Redis key of ours
// ("pallarel:" then a key character, not a message such as "pallarel: ").
var keyLiteral = regexp.MustCompile(`"pallarel:[A-Za-z|]`)

// TestNoKeyOutsideContract: no code outside this package spells one of our
// Redis keys, but the engine's own in sidekiq/internal/rdb (sidekiq must
// not import the application). Tests may spell a key to check what is in
// Redis: they are not walked.
func TestNoKeyOutsideContract(t *testing.T) {
	root := filepath.Join("..")
	allowed := map[string]bool{"contract": true, filepath.Join("sidekiq", "internal", "rdb"): true}
	var found []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || allowed[filepath.Dir(rel)] {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			if i := strings.Index(line, "//"); i >= 0 && !strings.Contains(line[:i], `"`) {
				line = line[:i] // a comment may name a key
			}
			if keyLiteral.MatchString(line) {
				found = append(found, rel+":"+itoa(n)+": "+strings.TrimSpace(sc.Text()))
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) > 0 {
		t.Errorf("Redis keys spelled outside contract (use contract's builders):\n%s", strings.Join(found, "\n"))
	}
	// The check can fail: this package's own keys match it.
	if !keyLiteral.MatchString(`"` + contract.SupervisorKey + `"`) {
		t.Fatalf("keyLiteral does not match %q", contract.SupervisorKey)
	}
}

func itoa(n int) string {
	b := []byte{}
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestImportGraph: contract imports nothing of ours; server and retention
// reach the pipeline (jobs and the run lifecycle) through nothing.
func TestImportGraph(t *testing.T) {
	deps := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+"/"+pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	for _, d := range deps("contract") {
		if strings.HasPrefix(d, module) && d != module+"/contract" {
			t.Errorf("contract imports %s: it must import nothing of ours", d)
		}
	}
	// server asks models for data: it spells no SQL.
	out, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, module+"/server").Output()
	if err != nil {
		t.Fatal(err)
	}
	if imports := strings.Fields(string(out)); len(imports) == 0 || slices.Contains(imports, "gorm.io/gorm") {
		t.Errorf("server imports %v: it must not import gorm", imports)
	}
	for _, pkg := range []string{"server", "retention"} {
		ds := deps(pkg)
		if len(ds) < 2 {
			t.Fatalf("go list -deps %s: %v", pkg, ds)
		}
		for _, d := range ds {
			if d == module+"/jobs" || d == module+"/run" {
				t.Errorf("%s depends on %s: it must reach runs through contract and models only", pkg, d)
			}
		}
	}
}

// TestConfigImportsNoProtocol: config validates Redis URLs without the
// sidekiq package.
func TestConfigImportsNoProtocol(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+"/config").Output()
	if err != nil {
		t.Fatal(err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, module+"/config") || slices.Contains(deps, module+"/sidekiq") {
		t.Fatalf("config depends on sidekiq, or go list failed: %v", deps)
	}
}
