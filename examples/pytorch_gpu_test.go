package examples_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ppml/ppml/manifest"
)

// TestPyTorchTemplateGPUs checks that the tutorial's template asks for GPUs only when rendered
// with -D gpus: all of them, a count, or none, as without GPUs.
func TestPyTorchTemplateGPUs(t *testing.T) {
	if _, err := os.Stat(python); err != nil {
		t.Skip("needs " + python)
	}
	example := "pytorch"
	template, err := os.ReadFile(filepath.Join(example, "pytorch.manifest.template"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script, err := os.ReadFile(filepath.Join(example, "pytorchexample.py"))
	if err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "ssl"), 0o755)
	for name, content := range map[string][]byte{"pytorchexample.py": script, "ssl/ca.crt": []byte("CA\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		gpus string // "" for no -D gpus
		want int
	}{
		{"", 0},
		{"all", manifest.AllGPUs},
		{"1", 1},
	} {
		defines := map[string]string{"entrypoint": python, "arch_libdir": "/lib/x86_64-linux-gnu", "server": "localhost:4433"}
		if tc.gpus != "" {
			defines["gpus"] = tc.gpus
		}
		b, err := manifest.Render(template, defines, &manifest.RenderOptions{Dir: dir})
		if err != nil {
			t.Fatalf("-D gpus=%s: %v", tc.gpus, err)
		}
		m, err := manifest.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if m.GPUs != tc.want {
			t.Errorf("-D gpus=%q: ppml.gpus = %d, want %d", tc.gpus, m.GPUs, tc.want)
		}
	}
}
