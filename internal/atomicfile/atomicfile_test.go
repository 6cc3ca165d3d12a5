package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ppml/ppml/internal/hostdir"
)

func TestFileCommitAndAbort(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "out")
	p, err := New(final, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Temp, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(final); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("output visible before Commit")
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(final); string(b) != "new" {
		t.Fatalf("output holds %q", b)
	}
	if _, err := New(final, false, false); !errors.Is(err, ErrExists) || err.Error() != final+" already exists" {
		t.Fatalf("existing output: %v", err)
	}
	p, err = New(final, false, true)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p.Temp, []byte("partial"), 0o600)
	p.Abort()
	if b, _ := os.ReadFile(final); string(b) != "new" {
		t.Fatalf("Abort changed the output: %q", b)
	}
	assertOnly(t, dir, "out")
}

func TestFolderCommit(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "tree")
	write := func(force bool, files map[string]string) error {
		p, err := New(final, true, force)
		if err != nil {
			return err
		}
		for name, content := range files {
			path := filepath.Join(p.Temp, name)
			os.MkdirAll(filepath.Dir(path), 0o755)
			os.WriteFile(path, []byte(content), 0o600)
		}
		return p.Commit()
	}
	if err := write(false, map[string]string{"a": "1", "sub/b": "2"}); err != nil {
		t.Fatal(err)
	}
	if err := write(false, map[string]string{"a": "x"}); !errors.Is(err, ErrExists) {
		t.Fatalf("existing folder: %v", err)
	}
	// With force, files are replaced one by one and others are kept.
	if err := write(true, map[string]string{"sub/b": "3", "c": "4"}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a": "1", "sub/b": "3", "c": "4"} {
		if b, _ := os.ReadFile(filepath.Join(final, name)); string(b) != want {
			t.Errorf("%s holds %q, want %q", name, b, want)
		}
	}
	assertOnly(t, dir, "tree")
}

func TestAbortAll(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"x", "y"} {
		if _, err := New(filepath.Join(dir, name), name == "y", false); err != nil {
			t.Fatal(err)
		}
	}
	AbortAll()
	assertOnly(t, dir)
}

// TestMissingFolder: the error names the first folder missing as the path writes it, before the
// kernel would resolve "sub/.." (only where sub exists).
func TestMissingFolder(t *testing.T) {
	t.Chdir(t.TempDir())
	os.WriteFile("file", nil, 0o600)
	for final, want := range map[string]string{
		"no/out":          "no/out: the folder no does not exist",
		"./sub/../x.jpg":  "./sub/../x.jpg: the folder ./sub does not exist",
		"./x//y/z.pf":     "./x//y/z.pf: the folder ./x does not exist",
		"file/out":        "file/out: file is not a folder",
		"file/../sub/out": "file/../sub/out: file is not a folder",
	} {
		if _, err := New(final, false, false); err == nil || err.Error() != want {
			t.Errorf("New(%q): %v, want %q", final, err, want)
		}
	}
}

// TestKindMismatch: a file never replaces a folder, nor a folder a file, even with force, and
// the error says so before anything is written.
func TestKindMismatch(t *testing.T) {
	dir := t.TempDir()
	folder, file := filepath.Join(dir, "folder"), filepath.Join(dir, "file")
	os.Mkdir(folder, 0o755)
	os.WriteFile(file, []byte("x"), 0o600)
	for _, force := range []bool{false, true} {
		if _, err := New(folder, false, force); err == nil || err.Error() != folder+" is a folder: a file does not replace it (name the output file itself, in the folder or elsewhere)" {
			t.Errorf("file over a folder (force %v): %v", force, err)
		}
		if _, err := New(file, true, force); err == nil || err.Error() != file+" is a file: a folder does not replace it (remove it, or name another output)" {
			t.Errorf("folder over a file (force %v): %v", force, err)
		}
	}
	assertOnly(t, dir, "file", "folder")
}

// TestFolderClash: with force, a folder output whose file lies where the existing folder has a
// folder, or whose folder where it has a file, replaces nothing and leaves no temporary output.
func TestFolderClash(t *testing.T) {
	for _, tc := range []struct {
		name     string
		existing func(final string)
		want     string
	}{
		{"file over folder", func(final string) { os.MkdirAll(filepath.Join(final, "b", "c"), 0o755) },
			"b is a folder, where the output has a file: nothing was replaced (remove it, or write the output elsewhere)"},
		{"folder over file", func(final string) { os.WriteFile(filepath.Join(final, "sub"), []byte("old"), 0o600) },
			"sub is a file, where the output has a folder: nothing was replaced (remove it, or write the output elsewhere)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			final := filepath.Join(dir, "tree")
			os.Mkdir(final, 0o755)
			os.WriteFile(filepath.Join(final, "a"), []byte("old"), 0o600)
			tc.existing(final)
			p, err := New(final, true, true)
			if err != nil {
				t.Fatal(err)
			}
			// "a" sorts first: it would be replaced before the clash is met.
			os.WriteFile(filepath.Join(p.Temp, "a"), []byte("new"), 0o600)
			os.WriteFile(filepath.Join(p.Temp, "b"), []byte("new"), 0o600)
			os.MkdirAll(filepath.Join(p.Temp, "sub"), 0o755)
			os.WriteFile(filepath.Join(p.Temp, "sub", "c"), []byte("new"), 0o600)
			if err := p.Commit(); err == nil || err.Error() != filepath.Join(final, tc.want) {
				t.Fatalf("Commit: %v, want %q", err, filepath.Join(final, tc.want))
			}
			if b, _ := os.ReadFile(filepath.Join(final, "a")); string(b) != "old" {
				t.Errorf("a was replaced: %q", b)
			}
			assertOnly(t, dir, "tree")
		})
	}
}

// assertOnly checks that dir holds exactly the named entries: no temporary ones are left.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(names) {
		var got []string
		for _, e := range entries {
			got = append(got, e.Name())
		}
		t.Fatalf("%s holds %v, want %v", dir, got, names)
	}
}

// TestCommitRace: an output that appears while the temporary one is written is not replaced,
// and the temporary output is removed.
func TestCommitRace(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "out")
	p, err := New(final, false, false)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p.Temp, []byte("secret plaintext"), 0o600)
	os.WriteFile(final, []byte("theirs"), 0o600)
	if err := p.Commit(); !errors.Is(err, ErrExists) {
		t.Fatalf("Commit: %v", err)
	}
	if b, _ := os.ReadFile(final); string(b) != "theirs" {
		t.Errorf("the other output was replaced: %q", b)
	}
	assertOnly(t, dir, "out")
}

func TestNotRegular(t *testing.T) {
	if _, err := New("/dev/null", false, true); err == nil {
		t.Error("a device would be replaced")
	}
}

// openRoot opens the folder dir for Replace.
func openRoot(t *testing.T, dir string) *hostdir.Root {
	t.Helper()
	r, err := hostdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func TestReplace(t *testing.T) {
	dir := t.TempDir()
	root := openRoot(t, dir)
	name := filepath.Join(dir, "f")
	if err := os.WriteFile(name, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	os.Chmod(name, 0o640)
	if err := Replace(root, "f", func(f *os.File) error { _, err := f.WriteString("new"); return err }); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(name)
	if b, _ := os.ReadFile(name); err != nil || string(b) != "new" || info.Mode().Perm() != 0o640 {
		t.Fatalf("after Replace: %q, mode %v, %v", b, info.Mode(), err)
	}

	// A failed write leaves the file as it was, and no temporary file.
	boom := errors.New("boom")
	if err := Replace(root, "f", func(f *os.File) error { f.WriteString("partial"); return boom }); !errors.Is(err, boom) {
		t.Fatalf("failed write: %v", err)
	}
	if b, _ := os.ReadFile(name); string(b) != "new" {
		t.Fatalf("a failed Replace changed the file: %q", b)
	}
	assertOnly(t, dir, "f")

	// Only regular files are replaced.
	os.Symlink("f", filepath.Join(dir, "link"))
	if err := Replace(root, "link", func(*os.File) error { return nil }); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("link replaced: %v", err)
	}
	if err := Replace(root, "missing", func(*os.File) error { return nil }); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestIsTemp(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "model.pt")
	p, err := New(final, false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abort()
	var seen string
	os.WriteFile(final, nil, 0o600)
	Replace(openRoot(t, dir), "model.pt", func(f *os.File) error { seen = filepath.Base(f.Name()); return nil })
	for _, name := range []string{filepath.Base(p.Temp), seen} {
		if !IsTemp(name) {
			t.Errorf("IsTemp(%q) = false for a temporary output", name)
		}
	}
	for _, name := range []string{"model.pt", ".model.pt", "x.ppml-tmp-1", ".ppml-tmp-1", ".model.pt.ppml-tmp-", ".model.pt.ppml-tmp-final", ""} {
		if IsTemp(name) {
			t.Errorf("IsTemp(%q) = true", name)
		}
	}
}
