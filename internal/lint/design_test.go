package lint

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestDesignPackages holds docs/design.md's package list to the code: every package of the
// module is listed (a folder of programs such as bench/ may stand for those below it), nothing
// listed is missing, and imports point down the list.
func TestDesignPackages(t *testing.T) {
	root := moduleRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "design.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(doc), "## Packages\n")
	_, block, _ := strings.Cut(section, "```\n")
	block, _, _ = strings.Cut(block, "```")
	var listed []string
	for _, m := range regexp.MustCompile(`(?m)^(\S+)/\s`).FindAllStringSubmatch(block, -1) {
		listed = append(listed, m[1])
	}
	if len(listed) < 10 {
		t.Fatalf("docs/design.md lists %d packages: %q", len(listed), listed)
	}

	files := parseModule(t, root)
	dirs := map[string]bool{}
	for _, f := range files {
		dirs[filepath.ToSlash(f.dir)] = true
	}
	// entry returns the index of the listed entry that stands for the package in dir.
	entry := func(dir string) int {
		if i := slices.Index(listed, dir); i >= 0 {
			return i
		}
		for i, e := range listed {
			if strings.HasPrefix(dir, e+"/") && !dirs[e] {
				return i
			}
		}
		return -1
	}
	for dir := range dirs {
		if entry(dir) < 0 {
			t.Errorf("package %s/ is not in docs/design.md's package list", dir)
		}
	}
	for _, e := range listed {
		if _, err := os.Stat(filepath.Join(root, e)); err != nil {
			t.Errorf("docs/design.md lists %s/, which does not exist", e)
		}
	}

	const module = "github.com/ppml/ppml/"
	for _, f := range files {
		from := filepath.ToSlash(f.dir)
		for _, imp := range f.ast.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			to, ok := strings.CutPrefix(path, module)
			if !ok {
				continue
			}
			if i, j := entry(from), entry(to); i >= 0 && j >= 0 && i >= j && from != to {
				t.Errorf("%s imports %s, which docs/design.md lists above it: dependencies point down the list", from, to)
			}
		}
	}
}
