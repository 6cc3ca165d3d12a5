package sandbox_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/sandbox"
)

// mountPointScript lists what the mounts made in other mounts hold, and tries to write next to
// them and through them.
const mountPointScript = `import os
for d in ["/p", "/p/sub", "/p/sub/new/deep", "/p/x/y", "/e", "/e/m/n", "/w", "/w/t/u"]:
    print(d, sorted(os.listdir(d)))
print(open("/p/a.txt").read().strip(), open("/e/f.txt").read().strip(), open("/p/x/y/o.txt").read().strip())
open("/w/t/u/scratch", "w").write("in the tmpfs")
open("/e/k.txt", "w").write("encrypted, made by the workload")
open("/w/log.txt", "a").write("appended\n")
for p in ["/p/sub/new/made", "/p/made", "/w/made"]:
    try:
        open(p, "w")
        print("made", p)
    except OSError as e:
        print(p, e.strerror)
`

// hostTree returns every path under dir with its type, permissions and size.
func hostTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	tree := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		size := info.Size()
		if info.IsDir() {
			size = 0
		}
		tree[p] = info.Mode().String() + " " + strings.Repeat("x", int(min(size, 1)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// TestMountPointsInView checks that mount points that the parent mount lacks are made in the
// workload's view, at any depth, in plain mounts bound as they are, writable plain mounts and
// encrypted folders, for plain, encrypted and tmpfs mounts, and that the host's tree is left as
// it was; that what the parent mount holds is served as before, writable where it was; and
// that the folders holding made mount points are read-only.
func TestMountPointsInView(t *testing.T) {
	slow(t)
	w := newWorld(t, map[string]string{"points.py": mountPointScript})
	w.write("host/plain/a.txt", "plain a")
	w.write("host/plain/sub/b.txt", "plain b")
	w.write("host/other/o.txt", "other o")
	w.write("host/writable/log.txt", "")
	os.Chmod("host/writable/log.txt", 0o666)
	w.encrypt("enc/data/f.txt", w.keys["model"], []byte("encrypted f"))
	m := w.manifest(`loader.argv = ["python3", "/app/points.py"]`, `
  { path = "/p", uri = "file:host/plain" },
  { path = "/p/sub/new/deep", type = "tmpfs" },
  { path = "/p/x/y", uri = "file:host/other" },
  { path = "/e", uri = "file:enc/data", type = "encrypted", key_name = "model" },
  { path = "/e/m/n", uri = "file:host/other" },
  { path = "/e/k.txt", uri = "file:enc/k.txt", type = "encrypted" },
  { path = "/w", uri = "file:host/writable" },
  { path = "/w/t/u", type = "tmpfs" },
`, provisioning(w.addr)+"\n"+`sgx.allowed_files = ["file:host/writable/"]`, "")
	w.serve(manifest.Measure(m), nil)
	tree := hostTree(t, w.dir)
	before := mounts(t)
	var out bytes.Buffer
	res, err := sandbox.Run(context.Background(), m, w.options(m, &out))
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("exit status %d:\n%s", res.ExitCode, out.String())
	}
	sameMounts(t, before)
	want := `/p ['a.txt', 'sub', 'x']
/p/sub ['b.txt', 'new']
/p/sub/new/deep []
/p/x/y ['o.txt']
/e ['f.txt', 'k.txt', 'm']
/e/m/n ['o.txt']
/w ['log.txt', 't']
/w/t/u []
plain a encrypted f other o
/p/sub/new/made Read-only file system
/p/made Read-only file system
/w/made Read-only file system
`
	if out.String() != want {
		t.Errorf("the workload saw\n%s\nwant\n%s", out.String(), want)
	}
	after := hostTree(t, w.dir)
	delete(after, filepath.Join(w.dir, "enc/k.txt")) // the workload's encrypted output
	tree[filepath.Join(w.dir, "host/writable/log.txt")] = after[filepath.Join(w.dir, "host/writable/log.txt")]
	if !reflect.DeepEqual(after, tree) {
		for p := range after {
			if _, ok := tree[p]; !ok {
				t.Errorf("made on the host: %s", p)
			}
		}
		t.Errorf("the host's tree changed")
	}
	if b, _ := os.ReadFile("host/writable/log.txt"); string(b) != "appended\n" {
		t.Errorf("the writable file through its parent's folder of mount points: %q", b)
	}
	if got := w.decrypt("enc/k.txt", w.keys["default"]); string(got) != "encrypted, made by the workload" {
		t.Errorf("the encrypted output: %q", got)
	}
}
