package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
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

func TestMissingFolder(t *testing.T) {
	if _, err := New(filepath.Join(t.TempDir(), "no", "out"), false, false); err == nil {
		t.Fatal("no error for a missing output folder")
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
