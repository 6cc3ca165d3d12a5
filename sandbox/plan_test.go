package sandbox

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/pf"
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
	if got := Environment(m.Env); !slices.Equal(got, want) {
		t.Errorf("environment %q, want %q", got, want)
	}
	m = parse(t, `libos.entrypoint = "/bin/app"
loader.env.LD_PRELOAD = "libsecret_prov_attest.so"
`)
	if got := Environment(m.Env); got == nil || len(got) != 0 {
		t.Errorf("environment %q, want none (and not nil, which os/exec reads as ppml's)", got)
	}
}

func TestPlanMounts(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, d := range []string{"app", "enc/data", "out"} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile("app/log.txt", nil, 0o644)
	os.Symlink("app", "link")
	m := parse(t, `libos.entrypoint = "/app/run"
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
		{Type: "chroot", Path: "/app", Source: dir + "/app", ReadOnly: true},
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

func TestCheckTrustedFiles(t *testing.T) {
	t.Chdir(t.TempDir())
	os.MkdirAll("app/lib", 0o755)
	for i := range 20 {
		os.WriteFile(filepath.Join("app/lib", strings.Repeat("x", i+1)), []byte(strings.Repeat("y", i)), 0o644)
	}
	m, err := parse(t, `libos.entrypoint = "/app/run"
sgx.trusted_files = ["file:app/"]
`).HashTrustedFiles("")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := CheckTrustedFiles(m); err != nil || n != 190 {
		t.Errorf("CheckTrustedFiles: %d bytes, %v", n, err)
	}
	os.WriteFile("app/lib/xxxxx", []byte("changed"), 0o644)
	if _, err := CheckTrustedFiles(m); err == nil || !strings.Contains(err.Error(), "trusted file app/lib/xxxxx has changed") {
		t.Errorf("a changed file: %v", err)
	}
	os.Remove("app/lib/xxxxx")
	if _, err := CheckTrustedFiles(m); err == nil || !strings.Contains(err.Error(), "app/lib/xxxxx") {
		t.Errorf("a missing file: %v", err)
	}
	unhashed := parse(t, `libos.entrypoint = "/app/run"
sgx.trusted_files = ["file:app/"]
`)
	if _, err := CheckTrustedFiles(unhashed); err == nil || !strings.Contains(err.Error(), "has no hash") {
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
