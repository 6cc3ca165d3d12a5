package sandbox

import (
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/pf"
	"github.com/ppml/ppml/trustfs"
)

var discard = slog.New(slog.DiscardHandler)

func parse(t *testing.T, text string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEnvironment(t *testing.T) {
	t.Setenv("PPML_PASSED", "from ppml")
	m := parse(t, `libos.entrypoint = "/bin/app"
fs.mounts = [{ path = "/enc", uri = "file:enc", type = "encrypted" }]
loader.env.LD_PRELOAD = "/lib/libsecret_prov_attest.so:libother.so"
loader.env.SECRET_PROVISION_SERVERS = "localhost:4433"
loader.env.SECRET_PROVISION_CONSTRUCTOR = "1"
loader.env.HOME = "/home/user"
loader.env.PPML_PASSED = { passthrough = true }
loader.env.PPML_UNSET = { passthrough = true }
loader.env.EMPTY = ""
`)
	want := []string{"EMPTY=", "HOME=/home/user", "LD_PRELOAD=libother.so", "PPML_PASSED=from ppml"}
	if got := Environment(m); !slices.Equal(got, want) {
		t.Errorf("environment %q, want %q", got, want)
	}
	m = parse(t, `libos.entrypoint = "/bin/app"
loader.env.LD_PRELOAD = "libsecret_prov_attest.so"
`)
	if got := Environment(m); got == nil || len(got) != 0 {
		t.Errorf("environment %q, want none (and not nil, which os/exec reads as ppml's)", got)
	}
}

// TestHostEnvironment checks loader.insecure__use_host_env: the host's environment, with
// loader.env's values over it, less what only Gramine uses; and a warning.
func TestHostEnvironment(t *testing.T) {
	t.Setenv("PPML_HOST", "host value")
	t.Setenv("PPML_OVER", "host value")
	t.Setenv("SECRET_PROVISION_SERVERS", "host:1")
	m := parse(t, `libos.entrypoint = "/bin/app"
loader.insecure__use_host_env = true
loader.env.PPML_OVER = "manifest value"
loader.env.PPML_PASS = { passthrough = true }
`)
	env := Environment(m)
	for _, want := range []string{"PPML_HOST=host value", "PPML_OVER=manifest value", "PATH=" + os.Getenv("PATH")} {
		if !slices.Contains(env, want) {
			t.Errorf("environment %q lacks %q", env, want)
		}
	}
	if slices.ContainsFunc(env, func(kv string) bool {
		return strings.HasPrefix(kv, "SECRET_PROVISION_") || strings.HasPrefix(kv, "PPML_PASS=") || kv == "PPML_OVER=host value"
	}) {
		t.Errorf("environment %q", env)
	}
	var log strings.Builder
	if _, err := plan(m, nil, slog.New(slog.NewTextHandler(&log, nil))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "loader.insecure__use_host_env") {
		t.Errorf("no warning of the host's environment: %s", log.String())
	}
}

func TestPlanMounts(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	// The root is an empty folder: the view's own root serves it (TestPlanRoot).
	for _, d := range []string{"app", "enc/data", "out", "root"} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile("app/log.txt", nil, 0o644)
	os.Symlink("app", "link")
	m := parse(t, `libos.entrypoint = "/app/run"
fs.root = { uri = "file:root" }
fs.mounts = [
  { path = "/app/", uri = "file:link" },
  { path = "/missing", uri = "file:missing" },
  { path = "/out", uri = "file:out" },
  { path = "/data", uri = "file:./enc/data", type = "encrypted", key_name = "model" },
  { path = "/in.txt", uri = "file:in.txt", type = "encrypted" },
  { path = "/result.txt", uri = "file:result.txt", type = "encrypted" },
  { path = "/abs.txt", uri = "file:`+dir+`/abs.txt", type = "encrypted" },
  { path = "/tmp", type = "tmpfs" },
]
sgx.allowed_files = ["file:app/log.txt", "file:out/"]
`)
	cfg, err := plan(m, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	wantVolumes := []volume{
		{Host: dir + "/enc/data", Prefix: "enc/data", KeyName: "model"},
		{Host: dir, Prefix: "", KeyName: "default"},
		{Host: dir, Prefix: dir, KeyName: "default"},
	}
	if !slices.Equal(cfg.Volumes, wantVolumes) {
		t.Errorf("volumes\n%+v\nwant\n%+v", cfg.Volumes, wantVolumes)
	}
	wantMounts := []stageMount{
		{Type: "chroot", Path: "/app", Source: dir + "/app", ReadOnly: true, Checked: "0"},
		{Type: "chroot", Path: "/app/log.txt", Source: dir + "/app/log.txt"},
		{Type: "chroot", Path: "/out", Source: dir + "/out"},
		{Type: "encrypted", Path: "/data", Volume: 0},
		{Type: "encrypted", Path: "/in.txt", Source: "in.txt", Volume: 1},
		{Type: "encrypted", Path: "/result.txt", Source: "result.txt", Volume: 1},
		{Type: "encrypted", Path: "/abs.txt", Source: "abs.txt", Volume: 2},
		{Type: "tmpfs", Path: "/tmp"},
	}
	if !slices.Equal(cfg.Mounts, wantMounts) {
		t.Errorf("mounts\n%+v\nwant\n%+v", cfg.Mounts, wantMounts)
	}
	// Without a trusted file, /app is empty but for the mount point of the allowed file.
	wantTrusted := []trustfs.Entry{{Path: "0", Kind: trustfs.Folder}, {Path: "0/log.txt", Kind: trustfs.Unchecked, Host: dir[1:] + "/app/log.txt"}}
	if !slices.Equal(cfg.Trusted, wantTrusted) {
		t.Errorf("trusted files' entries\n%+v\nwant\n%+v", cfg.Trusted, wantTrusted)
	}
	if !slices.Equal(cfg.Args, []string{"/app/run"}) {
		t.Errorf("argv %q", cfg.Args)
	}

	m = parse(t, `libos.entrypoint = "/app/run"
fs.mounts = [
  { path = "/data", uri = "file:enc", type = "encrypted" },
  { path = "/model", uri = "file:enc/data/model.pt", type = "encrypted" },
]
`)
	if _, err := plan(m, nil, discard); err == nil || !strings.Contains(err.Error(), "the encrypted mounts at /data and /model overlap on the host") {
		t.Errorf("overlapping encrypted mounts: %v", err)
	}
}

func TestCAHostPath(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, tc := range []struct{ env, mounts, trusted, want string }{
		{`"ca.crt"`, `{ path = "/app", uri = "file:ssl" }`, `"file:ssl/ca.crt"`, "ssl/ca.crt"},
		{`"/app/sub/ca.crt"`, `{ path = "/app", uri = "file:/etc/ppml" }`, `"file:/etc/ppml/sub/ca.crt"`, "/etc/ppml/sub/ca.crt"},
		{`"ca.crt"`, `{ path = "/app", uri = "file:ssl" }`, `"file:ssl/"`, "is not a trusted file: add it to sgx.trusted_files"},
		{`"/ssl/ca.crt"`, `{ path = "/app", uri = "file:ssl" }`, `"file:ssl/ca.crt"`, "SECRET_PROVISION_CA_CHAIN_PATH /ssl/ca.crt is in none of fs.mounts"},
		{`"/app/ca.crt"`, `{ path = "/app", type = "tmpfs" }`, `"file:ssl/ca.crt"`, "is in the tmpfs mount at /app: it must be a plain (chroot) file"},
	} {
		m := parse(t, `libos.entrypoint = "/app/run"
fs.start_dir = "/app"
loader.env.SECRET_PROVISION_CA_CHAIN_PATH = `+tc.env+`
fs.mounts = [`+tc.mounts+`]
sgx.trusted_files = [`+tc.trusted+`]
`)
		got, err := caHostPath(m)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s in %s: %q, want %q", tc.env, tc.mounts, got, tc.want)
		}
	}
}

// TestPlanHidden: the trusted files of a mount that a later mount inside it hides are not
// served by the outer one, whose mount point stays; a later mount that does not exist hides
// nothing.
func TestPlanHidden(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for name, content := range map[string]string{"lib/libz.so": "z", "lib/py/os.py": "os", "lib/py/sub/a.py": "a", "lib/gone/b.py": "b"} {
		os.MkdirAll(filepath.Dir(name), 0o755)
		os.WriteFile(name, []byte(content), 0o644)
	}
	// The root is a tmpfs: the folder the test runs in, Gramine's default root, would serve lib/
	// at /lib too.
	m, err := parse(t, `libos.entrypoint = "/usr/lib/libz.so"
fs.root = { type = "tmpfs" }
fs.mounts = [
  { path = "/usr/lib", uri = "file:lib" },
  { path = "/usr/lib/py", uri = "file:lib/py" },
  { path = "/usr/lib/gone", uri = "file:nowhere" },
]
sgx.trusted_files = ["file:lib/"]
`).HashTrustedFiles("")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := plan(m, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range cfg.Trusted {
		got = append(got, fmt.Sprintf("%s %d", e.Path, e.Kind))
	}
	want := []string{"1/gone/b.py 0", "1/libz.so 0", "2/os.py 0", "2/sub/a.py 0", "1/py 2"} // mount 0 is the root
	if !slices.Equal(got, want) {
		t.Errorf("entries %q, want %q", got, want)
	}
}

// TestPlanTrusted: each read-only plain mount is served by the trusted files' filesystem with
// the trusted files that the manifest names in it, by the paths it names them (a symbolic link
// among them served as the file it leads to). Under strict, it also holds the mount points of
// the mounts inside it, and a mount without trusted files is empty, or absent for a file; under
// allow_all_but_log it is bound as it is, and a mount with trusted files serves its other files,
// mount points included, unchecked. A trusted file must exist.
func TestPlanTrusted(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for name, content := range map[string]string{"app/run.py": "run", "app/extra.py": "extra", "lib/ld.so": "ld", "lib/libc.so": "libc",
		"usrlib/libz.so": "z", "py/os.py": "os", "bin/tool": "tool", "enc/model.pt": "model", "enc/data/x": "x", "app/data/.keep": "", "app/model.pt": ""} {
		os.MkdirAll(filepath.Dir(name), 0o755)
		os.WriteFile(name, []byte(content), 0o644)
	}
	os.MkdirAll("lib64", 0o755)
	os.Symlink("../lib/ld.so", "lib64/ld.so")
	os.MkdirAll("usrlib/python", 0o755)
	os.MkdirAll("root", 0o755) // an empty root: the view's own under strict (TestPlanRoot)
	text := `libos.entrypoint = "/app/run"
fs.root = { uri = "file:root" }
fs.mounts = [
  { path = "/app", uri = "file:app" },
  { path = "/lib64", uri = "file:lib64" },
  { path = "/usr/lib", uri = "file:usrlib" },
  { path = "/usr/lib/python", uri = "file:py" },
  { path = "/bin/tool", uri = "file:bin/tool" },
  { path = "/app/data", uri = "file:enc/data", type = "encrypted" },
  { path = "/app/model.pt", uri = "file:enc/model.pt", type = "encrypted" },
]
sgx.trusted_files = ["file:app/run.py", "file:lib64/ld.so", "file:py/", "file:lib/libc.so"]
`
	m, err := parse(t, text).HashTrustedFiles("")
	if err != nil {
		t.Fatal(err)
	}
	sum := func(s string) [32]byte { return sha256.Sum256([]byte(s)) }
	cfg, err := plan(m, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []trustfs.Entry{
		{Path: "0/run.py", Kind: trustfs.Trusted, Host: dir[1:] + "/app/run.py", SHA256: sum("run")},
		{Path: "1/ld.so", Kind: trustfs.Trusted, Host: dir[1:] + "/lib/ld.so", SHA256: sum("ld")},
		{Path: "2", Kind: trustfs.Folder},
		{Path: "3/os.py", Kind: trustfs.Trusted, Host: dir[1:] + "/py/os.py", SHA256: sum("os")},
		{Path: "0/data", Kind: trustfs.Folder},
		{Path: "0/model.pt", Kind: trustfs.File},
		{Path: "2/python", Kind: trustfs.Folder},
	}
	if !slices.Equal(cfg.Trusted, want) {
		t.Errorf("strict: entries\n%+v\nwant\n%+v", cfg.Trusted, want)
	}
	var checked []string
	for _, sm := range cfg.Mounts {
		checked = append(checked, sm.Path+"="+sm.Checked)
	}
	// The untrusted /bin/tool is not mounted.
	if want := []string{"/app=0", "/lib64=1", "/usr/lib=2", "/usr/lib/python=3", "/app/data=", "/app/model.pt="}; !slices.Equal(checked, want) {
		t.Errorf("strict: mounts %q, want %q", checked, want)
	}

	m, err = parse(t, text+`sgx.file_check_policy = "allow_all_but_log"`).HashTrustedFiles("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err = plan(m, nil, discard); err != nil {
		t.Fatal(err)
	}
	want = []trustfs.Entry{
		{Path: "1", Kind: trustfs.Unchecked, Host: dir[1:] + "/app"},
		{Path: "1/run.py", Kind: trustfs.Trusted, Host: dir[1:] + "/app/run.py", SHA256: sum("run")},
		{Path: "2", Kind: trustfs.Unchecked, Host: dir[1:] + "/lib64"},
		{Path: "2/ld.so", Kind: trustfs.Trusted, Host: dir[1:] + "/lib/ld.so", SHA256: sum("ld")},
		{Path: "4", Kind: trustfs.Unchecked, Host: dir[1:] + "/py"},
		{Path: "4/os.py", Kind: trustfs.Trusted, Host: dir[1:] + "/py/os.py", SHA256: sum("os")},
	}
	if !slices.Equal(cfg.Trusted, want) {
		t.Errorf("allow_all_but_log: entries\n%+v\nwant\n%+v", cfg.Trusted, want)
	}
	checked = nil
	for _, sm := range cfg.Mounts {
		checked = append(checked, sm.Path+"="+sm.Checked)
	}
	if want := []string{"/=", "/app=1", "/lib64=2", "/usr/lib=", "/usr/lib/python=4", "/bin/tool=", "/app/data=", "/app/model.pt="}; !slices.Equal(checked, want) {
		t.Errorf("allow_all_but_log: mounts %q, want %q", checked, want)
	}

	os.Remove("lib/ld.so")
	if _, err := plan(m, nil, discard); err == nil || !strings.Contains(err.Error(), "trusted file lib64/ld.so: lstat "+dir+"/lib/ld.so: no such file or directory") {
		t.Errorf("a missing trusted file: %v", err)
	}
	if _, err := plan(parse(t, text), nil, discard); err == nil || !strings.Contains(err.Error(), "has no hash") {
		t.Errorf("an unhashed manifest: %v", err)
	}
}

// TestOpenExistingHints: an existing file of a single-file encrypted mount that does not open
// gets the hint that fits what is wrong with it, and only a file encrypted with another key is
// said to be possibly left over from another run.
func TestOpenExistingHints(t *testing.T) {
	dir := t.TempDir()
	key, other := pf.Key{1}, pf.Key{2}
	encrypt := func(name string, k pf.Key, bound string) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := pf.Encrypt(f, strings.NewReader("data"), k, bound, nil); err != nil {
			t.Fatal(err)
		}
	}
	encrypt("good.txt", key, "good.txt")
	encrypt("other-key.txt", other, "other-key.txt")
	encrypt("other-path.txt", key, "elsewhere.txt")
	os.WriteFile(filepath.Join(dir, "plain.txt"), []byte("plain"), 0o644)
	for _, tc := range []struct{ name, want string }{
		{"good.txt", ""},
		{"missing.txt", ""},
		{"other-key.txt", `it was encrypted with another key than "default", or its metadata is damaged; if it is an output left over from a run with another key, move it away`},
		{"other-path.txt", "it was encrypted for another path: encrypt it for this mount with ppml pf encrypt --path other-path.txt"},
		{"plain.txt", "it is not a protected file ppml reads: encrypt it with ppml pf encrypt"},
	} {
		cfg := &stageConfig{
			Volumes: []volume{{Host: dir, KeyName: "default"}},
			Mounts:  []stageMount{{Type: manifest.Encrypted, Path: "/" + tc.name, Source: tc.name}},
		}
		err := openExisting(cfg, map[string]pf.Key{"default": key})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want the hint %q", tc.name, err, tc.want)
		case err != nil && tc.name != "other-key.txt" && strings.Contains(err.Error(), "left over"):
			t.Errorf("%s: %v says it may be left over", tc.name, err)
		}
	}
}

// TestPlanRoot checks Gramine's root: by default the folder ppml runs in, served as a plain
// mount (its trusted files, and the mount points of fs.mounts and of the devices and system
// files that ppml provides), left to the view's own empty root where it would hold nothing;
// fs.root names another folder, or a tmpfs.
func TestPlanRoot(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, d := range []string{"scripts", "lib", "empty"} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile("scripts/hello.py", []byte("print(1)"), 0o644)
	os.WriteFile("secret.txt", nil, 0o644)
	text := `libos.entrypoint = "/usr/bin/python3"
fs.mounts = [{ path = "/lib", uri = "file:lib" }]
sgx.trusted_files = ["file:scripts/"]
`
	m, err := parse(t, text).HashTrustedFiles("")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := plan(m, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := (stageMount{Type: "chroot", Path: "/", Source: dir, ReadOnly: true, Checked: "0"}); len(cfg.Mounts) != 2 || cfg.Mounts[0] != want {
		t.Errorf("mounts %+v, want the root first: %+v", cfg.Mounts, want)
	}
	served := map[string]trustfs.Kind{}
	for _, e := range cfg.Trusted {
		served[e.Path] = e.Kind
	}
	for p, kind := range map[string]trustfs.Kind{"0/scripts/hello.py": trustfs.Trusted, "0/lib": trustfs.Folder, "0/dev/null": trustfs.File, "0/proc/cpuinfo": trustfs.File} {
		if got, ok := served[p]; !ok || got != kind {
			t.Errorf("the root serves %s as %v (%v), want %v", p, got, ok, kind)
		}
	}
	if _, ok := served["0/secret.txt"]; ok {
		t.Error("the root serves secret.txt, which is not trusted")
	}

	for root, want := range map[string]string{`fs.root = { uri = "file:empty" }`: "/lib", `fs.root.type = "tmpfs"`: "/"} {
		m, err := parse(t, text+root).HashTrustedFiles("")
		if err != nil {
			t.Fatal(err)
		}
		if cfg, err = plan(m, nil, discard); err != nil {
			t.Fatal(err)
		}
		if cfg.Mounts[0].Path != want || cfg.Mounts[0].Type == manifest.Tmpfs != (want == "/") {
			t.Errorf("%s: mounts %+v", root, cfg.Mounts)
		}
	}
	m, err = parse(t, text+`fs.root = { uri = "file:none" }`).HashTrustedFiles("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plan(m, nil, discard); err == nil || !strings.Contains(err.Error(), "fs.root: lstat "+dir+"/none: no such file or directory") {
		t.Errorf("a missing root: %v", err)
	}
}
