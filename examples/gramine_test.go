package examples_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// gramineDefines are the -D values that Gramine's Makefiles pass, for this host.
var gramineDefines = []string{"-D", "arch_libdir=/lib/x86_64-linux-gnu", "-D", "log_level=error", "-D", "ra_type=none"}

// ppml runs the test's ppml in dir and returns its standard output.
func ppml(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(filepath.Join(ppmlDir, "ppml"), args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ppml %v: %v\n%s%s", args, err, out, stderr.Bytes())
	}
	return out
}

// native runs a program in dir and returns its standard output.
func native(t *testing.T, dir string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("native %s: %v\n%s", name, err, out)
	}
	return out
}

// copyExample copies the files of examples/gramine/NAME into a folder of the test's own.
func copyExample(t *testing.T, repo, name string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(repo, "examples", "gramine", name))); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestGramineManifests runs the manifests in the shape of Gramine's examples
// (examples/gramine: Gramine's runtime folder at /lib, the arch libdir inside it, no /lib64,
// whole library folders trusted), rendered with the -D values of Gramine's Makefiles, and
// checks that they print what they print natively: Python's hello world, and Bash with the
// programs it executes.
func TestGramineManifests(t *testing.T) {
	repo := setup(t)
	t.Run("python", func(t *testing.T) {
		dir := copyExample(t, repo, "python")
		ppml(t, dir, append([]string{"manifest", "render", "python.manifest.template", "-D", "entrypoint=/usr/bin/python3.11", "-o", "python.manifest"}, gramineDefines...)...)
		got := ppml(t, dir, "run", "python.manifest", "--tee", "sim", "--", "scripts/helloworld.py")
		if want := native(t, dir, "/usr/bin/python3.11", "scripts/helloworld.py"); !bytes.Equal(got, want) || len(want) == 0 {
			t.Errorf("python printed %q, natively %q", got, want)
		}
	})
	t.Run("bash", func(t *testing.T) {
		dir := copyExample(t, repo, "bash")
		ppml(t, dir, append([]string{"manifest", "render", "manifest.template", "-D", "execdir=/usr/bin", "-o", "bash.manifest"}, gramineDefines...)...)
		script := `echo $((6 * 7)); printf "%s\n" b a c | sort | tr a-z A-Z; ls /usr/bin/bash; uname -s; cat scripts/hello.txt`
		got := ppml(t, dir, "run", "bash.manifest", "--tee", "sim", "--", "-c", script)
		if want := native(t, dir, "/usr/bin/bash", "-c", script); !bytes.Equal(got, want) {
			t.Errorf("bash printed %q, natively %q", got, want)
		}
	})
}

// TestGramineManifestPyTorch runs the PyTorch inference with the manifest in the shape of the
// Gramine examples repository's (examples/gramine/pytorch, which trusts the whole of /usr/lib),
// and checks that its result.txt equals a native run's.
func TestGramineManifestPyTorch(t *testing.T) {
	repo := setup(t)
	dir := copyExample(t, repo, "pytorch")
	for _, name := range []string{"pytorchexample.py", "classes.txt"} {
		b, err := os.ReadFile(filepath.Join(repo, "examples", "pytorch", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	native(t, dir, python, filepath.Join(repo, "examples", "pytorch", "make-model.py"), ".")
	want := nativeInference(t, repo, dir)
	ppml(t, dir, append([]string{"manifest", "render", "pytorch.manifest.template", "-D", "entrypoint=/usr/bin/python3.11", "-o", "pytorch.manifest"}, gramineDefines...)...)
	result := filepath.Join(dir, "result.txt") // which the workload creates
	out := ppml(t, dir, "run", "pytorch.manifest", "--tee", "sim", "--", "pytorchexample.py")
	got, err := os.ReadFile(result)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("result.txt\n%s\nnative\n%s\n(output: %s)", got, want, out)
	}
}
