package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestHashTrustedFiles(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"app.py":          "print(1)",
		"lib/b.py":        "b",
		"lib/a-b/x.py":    "x",
		"lib/a/z.py":      "z",
		"lib/a/y.py":      "y",
		"lib/c/empty.txt": "",
		"outside/o.py":    "o",
	})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("../outside/o.py", filepath.Join(dir, "lib/link.py"))) // a link to a file counts
	must(os.Symlink("../outside", filepath.Join(dir, "lib/linkdir")))      // a link to a folder does not
	must(os.Symlink("missing", filepath.Join(dir, "lib/dangling")))        // nor a dangling link
	must(syscall.Mkfifo(filepath.Join(dir, "lib/fifo"), 0o644))            // nor a special file
	m := mustParse(t, minimal+`sgx.trusted_files = [
  "file:app.py",
  "file:lib/",
  "file:./lib//a/y.py",
  { uri = "file:given.bin", sha256 = "`+sum("not read")+`" },
  "file:`+dir+`/outside/",
]`)
	got, err := m.HashTrustedFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []TrustedFile{
		{"file:app.py", sum("print(1)")},
		{"file:lib/a/y.py", sum("y")},
		{"file:lib/a/z.py", sum("z")},
		{"file:lib/a-b/x.py", sum("x")},
		{"file:lib/b.py", sum("b")},
		{"file:lib/c/empty.txt", sum("")},
		{"file:lib/link.py", sum("o")},
		{"file:given.bin", sum("not read")},
		{"file:" + dir + "/outside/o.py", sum("o")},
	}
	if !reflect.DeepEqual(got.TrustedFiles, want) {
		t.Errorf("trusted files:\n%v\nwant\n%v", got.TrustedFiles, want)
	}
	if err := got.CheckHashed(); err != nil {
		t.Error(err)
	}
	// The rest of the manifest is unchanged, and hashing again changes nothing.
	if got.Entrypoint != "/bin/app" {
		t.Errorf("entrypoint %q", got.Entrypoint)
	}
	again, err := got.HashTrustedFiles(t.TempDir())
	if err != nil || string(again.Canonical()) != string(got.Canonical()) {
		t.Errorf("hashing a hashed manifest: %v\n%s", err, again.Canonical())
	}

	// A changed trusted file changes the measurement.
	writeFiles(t, dir, map[string]string{"lib/a/z.py": "Z"})
	changed, err := m.HashTrustedFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if Measure(changed) == Measure(got) {
		t.Error("changing a trusted file leaves the measurement as it was")
	}
}

func TestHashTrustedFilesErrors(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a.txt": "a", "d/f.txt": "f"})
	for _, tc := range []struct{ files, want string }{
		{`"file:missing.txt"`, "trusted file file:missing.txt: stat " + dir + "/missing.txt: no such file or directory"},
		{`"file:d/missing/"`, "trusted file file:d/missing/: stat"},
		{`"file:d"`, `trusted file file:d is a folder: end it with "/" to trust every file in it`},
		{`"file:a.txt/"`, "trusted file file:a.txt/ ends with / but is not a folder"},
		{`{ uri = "file:a.txt", sha256 = "` + sum("b") + `" }, "file:a.txt"`, "trusted file file:a.txt has two different hashes: " + sum("b") + " and " + sum("a")},
		{`"file:./d/f.txt", { uri = "file:d/f.txt", sha256 = "` + sum("g") + `" }`, "trusted file file:d/f.txt has two different hashes: " + sum("f") + " and " + sum("g")},
		{`{ uri = "file:x", sha256 = "` + sum("1") + `" }, { uri = "file:x", sha256 = "` + sum("2") + `" }`, "trusted file file:x has two different hashes"},
		{`"file:/dev/null"`, "trusted file file:/dev/null is not a regular file"},
	} {
		m := mustParse(t, minimal+"sgx.trusted_files = ["+tc.files+"]")
		if _, err := m.HashTrustedFiles(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.files, err, tc.want)
		}
	}
}

func TestHashTrustedFilesSkipsUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads everything")
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"d/ok.txt": "ok", "d/secret.txt": "s", "d/closed/x": "x"})
	if err := os.Chmod(filepath.Join(dir, "d/secret.txt"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "d/closed"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(dir, "d/closed"), 0o755) })
	m, err := mustParse(t, minimal+`sgx.trusted_files = ["file:d/"]`).HashTrustedFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []TrustedFile{{"file:d/ok.txt", sum("ok")}}; !reflect.DeepEqual(m.TrustedFiles, want) {
		t.Errorf("trusted files %v, want %v", m.TrustedFiles, want)
	}
}

// TestReadTrustedFile: a trusted file reads as the manifest hashed it, by any path that names
// it; a file that is not trusted, has changed, is gone or has no hash is an error naming it.
func TestReadTrustedFile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"model.pt": "weights", "sub/classes.txt": "cat", "other.txt": "x"})
	t.Chdir(dir)
	m, err := mustParse(t, minimal+`sgx.trusted_files = ["file:model.pt", "file:`+dir+`/sub/"]`).HashTrustedFiles("")
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"model.pt": "weights", "./model.pt": "weights", dir + "/model.pt": "weights", "sub/classes.txt": "cat", dir + "/sub/../sub/classes.txt": "cat"} {
		if b, err := m.ReadTrustedFile(p); err != nil || string(b) != want {
			t.Errorf("ReadTrustedFile(%s): %q, %v; want %q", p, b, err, want)
		}
	}
	if _, err := m.ReadTrustedFile("other.txt"); err == nil || err.Error() != "other.txt is not a trusted file of the manifest" {
		t.Errorf("an untrusted file: %v", err)
	}
	writeFiles(t, dir, map[string]string{"model.pt": "poisoned"})
	if b, err := m.ReadTrustedFile("model.pt"); err == nil || b != nil || !strings.Contains(err.Error(), "trusted file model.pt has changed since the manifest was made: its SHA-256 is "+sum("poisoned")+", the manifest has "+sum("weights")) {
		t.Errorf("a changed file: %q, %v", b, err)
	}
	os.Remove("model.pt")
	if _, err := m.ReadTrustedFile("model.pt"); err == nil || !strings.Contains(err.Error(), "trusted file model.pt: open model.pt: no such file") {
		t.Errorf("a removed file: %v", err)
	}
	unhashed := mustParse(t, minimal+`sgx.trusted_files = ["file:other.txt"]`)
	if _, err := unhashed.ReadTrustedFile("other.txt"); err == nil || !strings.Contains(err.Error(), "has no hash") {
		t.Errorf("an unhashed file: %v", err)
	}
}
