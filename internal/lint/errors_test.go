package lint

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// TestErrorPrefixes holds every error message of the module's non-test code to the rule of
// docs/design.md: a message says what failed and never starts with a package's name, since
// whoever has more context wraps it and the command line prefixes "ppml: ". It looks at the
// string literal that begins the message of each errors.New and fmt.Errorf call, and at every
// string literal in an Error() string method, and fails on one that begins with "NAME: ", where
// NAME is the name or the folder of any package of the module.
func TestErrorPrefixes(t *testing.T) {
	root := moduleRoot(t)
	files := parseModule(t, root)

	names := map[string]bool{}
	for _, f := range files {
		names[f.ast.Name.Name] = true
		names[filepath.Base(filepath.Dir(f.path))] = true
	}
	if !names["ratls"] || !names["ppml"] {
		t.Fatalf("the packages found under %s lack ratls or ppml: %v", root, names)
	}
	prefixOf := func(s string) string {
		name, _, ok := strings.Cut(s, ": ")
		if ok && names[name] {
			return name
		}
		return ""
	}

	var found []string
	for _, f := range files {
		for _, lit := range messages(f.ast) {
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatalf("%s: %v", f.fset.Position(lit.Pos()), err)
			}
			name := prefixOf(s)
			if name == "" {
				continue
			}
			pos := f.fset.Position(lit.Pos())
			found = append(found, fmt.Sprintf("%s:%d: %s starts with the package name %q", filepath.Join(f.dir, filepath.Base(pos.Filename)), pos.Line, lit.Value, name+": "))
		}
	}
	for _, line := range found {
		t.Error(line)
	}
	if len(found) > 0 {
		t.Log("an error says what failed (operation and object) and wraps its cause; it never starts with a package's name (docs/design.md, Conventions)")
	}
}

// messages returns the string literals that begin error messages in f: the first argument of
// errors.New and fmt.Errorf (the leftmost operand of a concatenation), and every string literal
// in a method Error() string.
func messages(f *ast.File) []*ast.BasicLit {
	local := map[string]string{"errors": "errors", "fmt": "fmt"} // import path → name in f
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		if _, ok := local[path]; ok && imp.Name != nil {
			local[path] = imp.Name.Name
		}
	}
	var lits []*ast.BasicLit
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncDecl:
			if n.Recv != nil && n.Name.Name == "Error" && n.Body != nil {
				ast.Inspect(n.Body, func(n ast.Node) bool {
					if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						lits = append(lits, lit)
					}
					return true
				})
			}
		case *ast.CallExpr:
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok || len(n.Args) == 0 {
				return true
			}
			pkg, ok := sel.X.(*ast.Ident)
			if !ok || !(pkg.Name == local["errors"] && sel.Sel.Name == "New" || pkg.Name == local["fmt"] && sel.Sel.Name == "Errorf") {
				return true
			}
			arg := n.Args[0]
			for {
				bin, ok := arg.(*ast.BinaryExpr)
				if !ok || bin.Op != token.ADD {
					break
				}
				arg = bin.X
			}
			if lit, ok := arg.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				lits = append(lits, lit)
			}
		}
		return true
	})
	return lits
}

type goFile struct {
	path string // absolute
	dir  string // folder relative to the module root
	fset *token.FileSet
	ast  *ast.File
}

// parseModule parses every non-test .go file under root, skipping testdata folders, folders
// whose names begin with "." or "_", and nested modules.
func parseModule(t *testing.T, root string) []goFile {
	t.Helper()
	fset := token.NewFileSet()
	var files []goFile
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path == root {
				return nil
			}
			if name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		dir, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		files = append(files, goFile{path: path, dir: dir, fset: fset, ast: f})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no Go files under %s", root)
	}
	return files
}

// moduleRoot returns the folder of the module's go.mod: two folders above this file.
func moduleRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller: no file")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	return root
}

// TestMessages checks that messages finds the literals that begin error messages, through
// renamed imports and concatenations, and nothing else.
func TestMessages(t *testing.T) {
	const src = `package p

import (
	"errors"
	f "fmt"
	"log"
)

type E struct{}

func (E) Error() string { return "in Error" }

func g(err error) {
	_ = errors.New("new")
	_ = f.Errorf("errorf %w", err)
	_ = errors.New("concat " + "ed")
	_ = f.Sprintf("sprintf")
	log.Printf("log")
	panic("panic")
}
`
	file, err := parser.ParseFile(token.NewFileSet(), "p.go", src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, lit := range messages(file) {
		got = append(got, lit.Value)
	}
	want := []string{`"in Error"`, `"new"`, `"errorf %w"`, `"concat "`}
	if !slices.Equal(got, want) {
		t.Errorf("messages = %v, want %v", got, want)
	}
}

// TestErrorFieldNames holds error messages to another rule of docs/design.md: they name flags
// and configuration keys, never Go fields. It collects the settings' Go names, the exported
// fields of struct types named Options, Settings or Config and every field with a toml tag,
// whose names are in mixed case with two capitals or more (SkipCRL; not SGX, an acronym, nor
// Debug, a word), and fails on a message literal that holds one as a word.
func TestErrorFieldNames(t *testing.T) {
	files := parseModule(t, moduleRoot(t))
	fields := map[string]bool{}
	for _, f := range files {
		ast.Inspect(f.ast, func(n ast.Node) bool {
			spec, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := spec.Type.(*ast.StructType)
			if !ok {
				return true
			}
			settings := slices.Contains([]string{"Options", "Settings", "Config"}, spec.Name.Name)
			for _, field := range st.Fields.List {
				tagged := field.Tag != nil && strings.Contains(field.Tag.Value, `toml:"`)
				for _, name := range field.Names {
					if name.IsExported() && (settings || tagged) && mixedCase(name.Name) {
						fields[name.Name] = true
					}
				}
			}
			return true
		})
	}
	if !fields["SkipCRL"] || !fields["TLSCert"] {
		t.Fatalf("the settings' fields found lack SkipCRL or TLSCert: %v", slices.Sorted(maps.Keys(fields)))
	}
	word := regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)
	for _, f := range files {
		for _, lit := range messages(f.ast) {
			s, _ := strconv.Unquote(lit.Value)
			for _, w := range word.FindAllString(s, -1) {
				if fields[w] {
					pos := f.fset.Position(lit.Pos())
					t.Errorf("%s:%d: %s names the Go field %s: name the flag or configuration key", filepath.Join(f.dir, filepath.Base(pos.Filename)), pos.Line, lit.Value, w)
				}
			}
		}
	}
}

// mixedCase reports whether name has two capitals or more and a lower-case letter.
func mixedCase(name string) bool {
	upper := 0
	for _, r := range name {
		if unicode.IsUpper(r) {
			upper++
		}
	}
	return upper >= 2 && strings.ToUpper(name) != name
}
