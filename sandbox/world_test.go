package sandbox_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/faketsm"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sim"
	"github.com/ppml/ppml/attest/tdx"
	"github.com/ppml/ppml/internal/testfiles"
	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/pf"
	"github.com/ppml/ppml/provision"
	"github.com/ppml/ppml/sandbox"
	"github.com/ppml/ppml/store"
)

// python is the interpreter of the workloads, with what it needs: the libraries it links and
// the standard library.
const python = "/usr/bin/python3"

// pythonMounts mounts python and what it needs at their host paths; pythonTrusted lists the
// files among them that the tests trust (the standard library is left out to keep them quick).
const (
	pythonMounts = `
  { path = "/usr/bin/python3", uri = "file:/usr/bin/python3" },
  { path = "/lib64", uri = "file:/lib64" },
  { path = "/lib/x86_64-linux-gnu", uri = "file:/lib/x86_64-linux-gnu" },
  { path = "/usr/lib/python3.11", uri = "file:/usr/lib/python3.11" },`
	pythonTrusted = `"file:/usr/bin/python3", "file:/lib64/ld-linux-x86-64.so.2", "file:/lib/x86_64-linux-gnu/libc.so.6",
  "file:/lib/x86_64-linux-gnu/libm.so.6", "file:/lib/x86_64-linux-gnu/libz.so.1", "file:/lib/x86_64-linux-gnu/libexpat.so.1",`
)

// needRoot skips tests that mount filesystems where they cannot.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for mount namespaces and FUSE")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("needs /dev/fuse")
	}
	if _, err := os.Stat(python); err != nil {
		t.Skip("needs " + python)
	}
}

// slow skips end-to-end tests in short mode.
func slow(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: not in short mode")
	}
}

// world is a work folder, the current folder while the test runs, and a provisioning server
// on loopback that trusts a simulated platform.
type world struct {
	t      testing.TB
	dir    string
	server string // the server's folder
	plat   *sim.Platform
	ln     net.Listener
	addr   string // localhost:PORT
	keys   map[string]pf.Key
	store  store.Store // the server's, once it serves
	// policy is the manifests' sgx.file_check_policy: allow_all_but_log unless a test sets
	// strict, since they leave Python's standard library out of the trusted files.
	policy string
}

// newWorld makes a work folder with app/ holding the server's CA certificate and the files
// given, and keys "default" and "model" for the test's files.
func newWorld(t testing.TB, app map[string]string) *world {
	t.Helper()
	needRoot(t)
	w := &world{t: t, dir: t.TempDir(), server: t.TempDir(), keys: map[string]pf.Key{}, policy: manifest.AllowAllButLog}
	t.Chdir(w.dir)
	if err := provision.Setup(w.server, []string{"localhost"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	var err error
	if w.plat, err = sim.Init(filepath.Join(w.server, "sim"), "", time.Now()); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(w.server, provision.SetupCACert))
	if err != nil {
		t.Fatal(err)
	}
	w.write("app/ca.crt", string(ca))
	for name, content := range app {
		w.write("app/"+name, content)
	}
	for _, name := range []string{"default", "model"} {
		var k pf.Key
		rand.Read(k[:])
		w.keys[name] = k
	}
	if w.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.ln.Close() })
	w.addr = "localhost:" + strings.TrimPrefix(w.ln.Addr().String(), "127.0.0.1:")
	return w
}

// write writes a file of the work folder.
func (w *world) write(name, content string) {
	w.t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// encrypt writes plain as the protected file name, bound to name as Gramine binds it.
func (w *world) encrypt(name string, key pf.Key, plain []byte) {
	w.t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		w.t.Fatal(err)
	}
	f, err := os.Create(name)
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	if _, err := pf.Encrypt(f, bytes.NewReader(plain), key, pf.NormalizePath(name), nil); err != nil {
		w.t.Fatal(err)
	}
}

// decrypt returns the plaintext of the protected file name.
func (w *world) decrypt(name string, key pf.Key) []byte {
	w.t.Helper()
	f, err := os.Open(name)
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	info, _ := f.Stat()
	var out bytes.Buffer
	if _, err := pf.Decrypt(&out, f, info.Size(), key, &pf.Options{CheckPath: true, Path: pf.NormalizePath(name)}); err != nil {
		w.t.Fatalf("decrypt %s: %v", name, err)
	}
	return out.Bytes()
}

// manifest writes the manifest app.manifest: the workload runs python with the arguments that the
// loader line args gives (loader.argv or loader.insecure__use_cmdline_argv) in /app, with
// the mounts given after python's and app/, and the environment given; trusted lists trusted
// files after python's and app/, and w.policy is the file-check policy. It returns the manifest
// with its trusted files hashed.
func (w *world) manifest(args, mounts, env, trusted string) *manifest.Manifest {
	w.t.Helper()
	text := fmt.Sprintf(`libos.entrypoint = %q
%s
loader.env.PYTHONDONTWRITEBYTECODE = "1"
%s
fs.start_dir = "/app"
fs.mounts = [%s
  { path = "/app", uri = "file:app" },
%s
]
sgx.trusted_files = [%s
  "file:app/", %s
]
sgx.file_check_policy = %q
`, python, args, env, pythonMounts, mounts, pythonTrusted, trusted, w.policy)
	m, err := manifest.Parse([]byte(text))
	if err != nil {
		w.t.Fatalf("%v\n%s", err, text)
	}
	if m, err = m.HashTrustedFiles(""); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile("app.manifest", m.Canonical(), 0o644); err != nil {
		w.t.Fatal(err)
	}
	return m
}

// provisioning is the manifest environment that provisions keys from servers.
func provisioning(servers string) string {
	return fmt.Sprintf(`loader.env.SECRET_PROVISION_SERVERS = %q
loader.env.SECRET_PROVISION_CA_CHAIN_PATH = "ca.crt"
loader.env.SECRET_PROVISION_SET_KEY = "default"
loader.env.LD_PRELOAD = "libsecret_prov_attest.so"`, servers)
}

// serve starts the provisioning server on the world's listener, with a policy that gives the
// keys to the workload whose MRENCLAVE is mrenclave, and keys that are the world's unless
// replaced.
func (w *world) serve(mrenclave [32]byte, replace map[string]pf.Key) {
	w.t.Helper()
	w.servePolicy(fmt.Sprintf(`[[workload]]
name = "test"
tee = "sgx"
mrenclave = ["%x"]
keys = ["default", "model"]
allow_simulated = true
`, mrenclave), replace)
}

// servePolicy starts the provisioning server on the world's listener, trusting the world's
// simulated platform, with the rest of its configuration (settings, then workloads) in policy,
// and keys that are the world's unless replaced.
// lastAudit returns the reason of the server's newest audit record.
func (w *world) lastAudit() string {
	w.t.Helper()
	for rec, err := range w.store.AuditRecords(context.Background(), store.AuditFilter{Limit: 1, Tail: true}) {
		if err != nil {
			w.t.Fatal(err)
		}
		return rec.Reason
	}
	w.t.Fatal("no audit record")
	return ""
}

func (w *world) servePolicy(policy string, replace map[string]pf.Key) {
	w.t.Helper()
	config := `tls_cert = "server.crt"
tls_key = "server.key"
store = "sqlite:ppml.db"
master_key_file = "master.key"
sim_platforms = ["sim"]
` + policy
	path := filepath.Join(w.server, "server.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		w.t.Fatal(err)
	}
	cfg, err := provision.LoadConfig(path)
	if err != nil {
		w.t.Fatal(err)
	}
	mk, err := store.ReadMasterKey(cfg.MasterKeyFile)
	if err != nil {
		w.t.Fatal(err)
	}
	st, err := store.Open(cfg.Store, mk)
	if err != nil {
		w.t.Fatal(err)
	}
	for name, k := range w.keys {
		if r, ok := replace[name]; ok {
			k = r
		}
		if _, err := st.ImportKey(context.Background(), name, k[:]); err != nil {
			w.t.Fatal(err)
		}
	}
	srv, err := provision.NewServer(cfg, st, nil, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	w.store = st
	go srv.Serve(w.ln)
	w.t.Cleanup(func() {
		srv.Shutdown(context.Background())
		st.Close()
	})
}

// tdxPolicy writes the collateral of set TDX-1 of testdata/attestation to the server's folder
// tdx, and returns the configuration that trusts it and gives the keys to that set's TD.
func (w *world) tdxPolicy() string {
	w.t.Helper()
	testfiles.CollateralDir(w.t, filepath.Join(w.server, "tdx"), "tdx/oasis-core/tcb_info_v3_tdx_fmspc_C0806F000000.json", "tdx/oasis-core/qe_identity_v2_tdx2.json")
	return `tdx_collateral = "tdx"
skip_crl = true

[[workload]]
name = "td"
tee = "tdx"
mrtd = ["91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"]
keys = ["default", "model"]
`
}

// fakeTD is the attester of a TD whose configfs-tsm, go-configfs-tsm's fake, answers every
// request with the recorded quote of set TDX-1, which binds another key and whose collateral
// has expired: it cannot verify.
func (w *world) fakeTD() attest.Attester {
	w.t.Helper()
	quote, err := os.ReadFile(filepath.Join(testfiles.Attestation, "tdx/oasis-core/quote_v4_tdx_ecdsa_p256.bin"))
	if err != nil {
		w.t.Fatal(err)
	}
	reports := faketsm.Report611(0)
	reports.ReadAttr = func(_ *faketsm.ReportEntry, attr string) ([]byte, error) {
		switch attr {
		case "provider":
			return []byte("tdx_guest\n"), nil
		case "outblob":
			return quote, nil
		}
		return nil, fmt.Errorf("unexpected attribute %s", attr)
	}
	return tdx.NewAttester(&faketsm.Client{Subsystems: map[string]configfsi.Client{"report": reports}})
}

// options are Run's options for m on the world's platform, with the workload's output in out.
func (w *world) options(m *manifest.Manifest, out *bytes.Buffer) sandbox.Options {
	return sandbox.Options{
		Attester: sim.Attester{Platform: w.plat, Enclave: sim.WorkloadEnclave(m, nil)},
		Stdout:   out,
		Stderr:   out,
	}
}

// mounts returns the mount table of the test's mount namespace, the host's.
func mounts(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// sameMounts fails the test if the host has a mount that was not in before and that could be
// the sandbox's: one under /tmp (where the sandbox builds the view in its own namespace), or
// one that names the work folder. (Other tests may mount elsewhere meanwhile: those of other
// packages, which go test runs at the same time, mount their own temporary folders.)
func sameMounts(t testing.TB, before []string) {
	t.Helper()
	wd, _ := os.Getwd()
	others := filepath.Join(os.TempDir(), "Test")
	for _, line := range mounts(t) {
		fields := strings.Fields(line)
		if slices.Contains(before, line) || len(fields) < 5 {
			continue
		}
		if _, after, _ := strings.Cut(line, " - "); len(strings.Fields(after)) > 1 {
			if src := strings.Fields(after)[1]; strings.HasPrefix(src, others) && !strings.Contains(line, wd) {
				continue // another test's folder, served by a filesystem of its own
			}
		}
		if mp := fields[4]; mp == "/tmp" || strings.HasPrefix(mp, "/tmp/host") || strings.HasPrefix(mp, "/tmp/root") || strings.HasPrefix(mp, "/tmp/encfs") || strings.HasPrefix(mp, "/tmp/trustfs") || strings.Contains(line, wd) {
			t.Errorf("left mounted on the host: %s", line)
		}
	}
}

// alive reports whether the process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(after, "Z")
}

// newCanary returns a random string to look for on the disk.
func newCanary() string {
	var b [12]byte
	rand.Read(b[:])
	return "CANARY-" + hex.EncodeToString(b[:])
}

// findOnDisk returns the files below the roots all, and those changed since since below the
// roots changed (shared folders such as /tmp), that hold s. In shared folders it skips files
// over 64 MiB, which other tests may be writing: nothing of the sandbox's is that large.
func findOnDisk(t testing.TB, s string, since time.Time, all []string, changed []string) []string {
	t.Helper()
	var found []string
	look := func(root string, shared bool) {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			info, err := d.Info()
			if err != nil || shared && (info.ModTime().Before(since) || info.Size() > 64<<20) {
				return nil
			}
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(s)) {
				found = append(found, p)
			}
			return nil
		})
	}
	for _, root := range all {
		look(root, false)
	}
	for _, root := range changed {
		look(root, true)
	}
	return found
}
