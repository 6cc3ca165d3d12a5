package sandbox_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/pf"
	"github.com/ppml/ppml/sandbox"
)

// workScript is the end-to-end workload: it reads a text file and a folder of files and writes a
// report of them, the text included.
const workScript = `import hashlib, os, sys
text, folder, out = sys.argv[1:4]
lines = open(text, encoding="utf-8").read().splitlines()
with open(out, "w", encoding="utf-8") as f:
    for line in lines:
        f.write(line + "\n")
    for line in reversed(lines):
        f.write(line[::-1].upper() + "\n")
    for name in sorted(os.listdir(folder)):
        b = open(os.path.join(folder, name), "rb").read()
        f.write("%s %d %s\n" % (name, len(b), hashlib.sha256(b).hexdigest()))
print("done", len(lines))
`

// workMounts are the end-to-end workload's encrypted mounts, as in Gramine's PyTorch tutorial:
// single files in the folder where ppml runs, and a folder under another key.
const workMounts = `
  { path = "/input.txt", uri = "file:input.txt", type = "encrypted" },
  { path = "/data", uri = "file:enc/data", type = "encrypted", key_name = "model" },
  { path = "/result.txt", uri = "file:result.txt", type = "encrypted" },
  { path = "/tmp", type = "tmpfs" },`

const workArgv = `loader.argv = ["python3", "/app/work.py", "/input.txt", "/data", "/result.txt"]`

// workInputs are the end-to-end workload's inputs, each with the canary.
func workInputs(canary string) map[string][]byte {
	model := make([]byte, 100_000)
	rand.NewChaCha8([32]byte{}).Read(model)
	copy(model[5000:], canary)
	return map[string][]byte{
		"input.txt":          []byte("first line\nthe canary: " + canary + "\nlast line\n"),
		"enc/data/model.bin": model,
		"enc/data/labels":    []byte(strings.Repeat("label "+canary+"\n", 1000)),
	}
}

// newWorkWorld is a world with the end-to-end workload and its inputs encrypted.
func newWorkWorld(t *testing.T, canary string) *world {
	w := newWorld(t, map[string]string{"work.py": workScript})
	for name, plain := range workInputs(canary) {
		key := w.keys["default"]
		if strings.HasPrefix(name, "enc/") {
			key = w.keys["model"]
		}
		w.encrypt(name, key, plain)
	}
	return w
}

// nativeRun runs the workload on the plaintext inputs, kept in memory (/dev/shm), and returns
// what it writes.
func nativeRun(t *testing.T, canary string) []byte {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "ppml-native-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	for name, plain := range workInputs(canary) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, plain, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(python, "app/work.py", filepath.Join(dir, "input.txt"), filepath.Join(dir, "enc/data"), filepath.Join(dir, "result.txt"))
	cmd.Env = []string{"PYTHONDONTWRITEBYTECODE=1"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("native run: %v\n%s", err, out)
	}
	out, err := os.ReadFile(filepath.Join(dir, "result.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEndToEnd runs a Python workload on encrypted inputs, with its keys provisioned by a server
// behind one that cannot be reached, and checks its encrypted output against a native run, and
// that its plaintext reached neither the disk nor a mount of the host.
func TestEndToEnd(t *testing.T) {
	slow(t)
	start := time.Now()
	canary := newCanary()
	w := newWorkWorld(t, canary)
	m := w.manifest(workArgv, workMounts, provisioning("localhost:1, "+w.addr), "")
	w.serve(manifest.Measure(m), nil)
	before := mounts(t)

	var out bytes.Buffer
	res, err := sandbox.Run(context.Background(), m, w.options(m, &out))
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || out.String() != "done 3\n" {
		t.Fatalf("exit status %d, output:\n%s", res.ExitCode, out.String())
	}
	sameMounts(t, before)
	got := w.decrypt("result.txt", w.keys["default"])
	if want := nativeRun(t, canary); !bytes.Equal(got, want) {
		t.Errorf("the encrypted output decrypts to\n%s\nthe native run wrote\n%s", got, want)
	}
	if !bytes.Contains(got, []byte(canary)) {
		t.Error("the output does not hold the canary")
	}
	if found := findOnDisk(t, canary, start, []string{w.dir, w.server}, []string{os.TempDir()}); len(found) > 0 {
		t.Errorf("plaintext on the host's disk: %v", found)
	}
	t.Logf("keys %v, sandbox %v, start-up %v; trusted files checked %+v", res.Keys, res.Sandbox, res.Startup, res.Checked)

	// A second run opens the first one's output, and replaces it.
	if res, err = sandbox.Run(context.Background(), m, w.options(m, &out)); err != nil || res.ExitCode != 0 {
		t.Fatalf("second run: %v, %v", res, err)
	}
}

// TestRefusals checks that the workload does not start, with an error saying why ({dir}, {addr}
// and {mrenclave} standing for the work folder, the server and the workload's), when the CA
// certificate of the provisioning servers changed, the key is wrong, the server refuses the
// workload (also a TD's, attesting through configfs-tsm) or cannot be reached; and that nothing
// stays mounted. (Another trusted file that changed is refused when the workload opens it:
// TestChangedScript.)
func TestRefusals(t *testing.T) {
	slow(t)
	for _, tc := range []struct {
		name     string
		servers  func(*world) string
		serve    func(*world, *manifest.Manifest)
		attester func(*world) attest.Attester // nil: the world's simulated platform
		change   func(*world)
		want     string
		audit    string // what the server's audit record says, when it refuses
	}{
		{
			name: "changed CA certificate",
			change: func(w *world) {
				ca, _ := os.ReadFile("app/ca.crt")
				w.write("app/ca.crt", string(ca)+"\n")
			},
			want: "SECRET_PROVISION_CA_CHAIN_PATH: trusted file app/ca.crt has changed since the manifest was made",
		},
		{
			name: "wrong key",
			serve: func(w *world, m *manifest.Manifest) {
				w.serve(manifest.Measure(m), map[string]pf.Key{"default": {1, 2, 3}})
			},
			want: `encrypted mount /input.txt: {dir}/input.txt does not open with key "default": wrong key or damaged metadata`,
		},
		{
			name:  "refused attestation",
			serve: func(w *world, m *manifest.Manifest) { w.serve([32]byte{1}, nil) },
			want:  "keys default, model from {addr}: the server refused: see audit record ",
			audit: "no workload admits it (test: mrenclave {mrenclave} is not the one allowed)",
		},
		{
			name:     "TD quote that does not verify",
			serve:    func(w *world, m *manifest.Manifest) { w.servePolicy(w.tdxPolicy(), nil) },
			attester: (*world).fakeTD,
			want:     "keys default, model from {addr}: the server refused: see audit record ",
			audit:    "attestation failed: tdx evidence (TCG tagged evidence): evidence does not verify: ",
		},
		{
			name:    "unreachable server",
			servers: func(w *world) string { return "localhost:1" },
			want:    "keys default, model from localhost:1: localhost:1: dial tcp",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorkWorld(t, newCanary())
			servers := w.addr
			if tc.servers != nil {
				servers = tc.servers(w)
			}
			m := w.manifest(workArgv, workMounts, provisioning(servers), "")
			if tc.serve != nil {
				tc.serve(w, m)
			} else {
				w.serve(manifest.Measure(m), nil)
			}
			if tc.change != nil {
				tc.change(w)
			}
			before := mounts(t)
			var out bytes.Buffer
			opts := w.options(m, &out)
			if tc.attester != nil {
				opts.Attester = tc.attester(w)
			}
			res, err := sandbox.Run(context.Background(), m, opts)
			fill := strings.NewReplacer("{dir}", w.dir, "{addr}", w.addr, "{mrenclave}", fmt.Sprintf("%x", manifest.Measure(m))).Replace
			if want := fill(tc.want); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Run: %v, %v; want an error with %q", res, err, want)
			}
			if want := fill(tc.audit); tc.audit != "" && !strings.Contains(w.lastAudit(), want) {
				t.Errorf("audit reason %q, want %q", w.lastAudit(), want)
			}
			if out.Len() > 0 {
				t.Errorf("the workload ran: %s", out.String())
			}
			sameMounts(t, before)
			if _, err := os.Stat("result.txt"); err == nil {
				t.Error("result.txt was created")
			}
		})
	}
}

// TestSandboxDies kills the sandbox process, the FUSE server of the encrypted mounts, under a
// running workload: the workload dies with it, Run says so, and nothing stays mounted.
func TestSandboxDies(t *testing.T) {
	slow(t)
	w := newWorkWorld(t, newCanary())
	w.write("app/pids.py", `import time
print("running", flush=True)
for _ in range(600):
    time.sleep(0.05)
`)
	m := w.manifest(`loader.argv = ["python3", "/app/pids.py"]`, workMounts, provisioning(w.addr), "")
	w.serve(manifest.Measure(m), nil)
	before := mounts(t)
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Once the workload runs, the sandbox process (this process's child) and the workload (its
	// PID namespace hides their host PIDs from it) are found in the host's /proc.
	pids := make(chan []int, 1)
	go func() {
		r.Read(make([]byte, 100))
		ids := []int{childNamed(t, os.Getpid(), "ppml-sandbox"), processRunning(t, "/app/pids.py")}
		if ids[0] > 0 {
			syscall.Kill(ids[0], syscall.SIGKILL)
		}
		pids <- ids
	}()
	var out bytes.Buffer
	opts := w.options(m, &out)
	opts.Stdout = wr
	res, err := sandbox.Run(context.Background(), m, opts)
	wr.Close()
	if err == nil || !strings.Contains(err.Error(), "the sandbox process, which serves the workload's mounts, died (signal: killed); the workload died with it") {
		t.Errorf("Run: %v, %v; want an error saying the sandbox died", res, err)
	}
	ids := <-pids
	if ids[0] <= 0 || ids[1] <= 0 {
		t.Fatalf("sandbox process %d, workload %d: not found", ids[0], ids[1])
	}
	for i := 0; alive(ids[1]); i++ {
		if i == 100 {
			t.Fatalf("the workload (pid %d) outlived the sandbox", ids[1])
		}
		time.Sleep(10 * time.Millisecond)
	}
	sameMounts(t, before)
}

// childNamed returns the PID of the child of parent whose command line starts with name, or 0.
func childNamed(t *testing.T, parent int, name string) int {
	for _, pid := range processes(t) {
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(status), fmt.Sprintf("\nPPid:\t%d\n", parent)) && strings.HasPrefix(string(cmdline), name) {
			return pid
		}
	}
	return 0
}

// processRunning returns the PID of a process whose command line holds arg, or 0.
func processRunning(t *testing.T, arg string) int {
	for _, pid := range processes(t) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cmdline), "\x00"+arg) {
			return pid
		}
	}
	return 0
}

// processes returns the host's process IDs.
func processes(t *testing.T) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestDamagedInput checks that a damaged protected file fails the workload's read, and that the
// log line naming it gives its host path.
func TestDamagedInput(t *testing.T) {
	slow(t)
	w := newWorkWorld(t, newCanary())
	f, err := os.OpenFile("enc/data/model.bin", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff}, 3*pf.NodeSize+10) // in a data node
	f.Close()
	m := w.manifest(workArgv, workMounts, provisioning(w.addr), "")
	w.serve(manifest.Measure(m), nil)
	var out bytes.Buffer
	res, err := sandbox.Run(context.Background(), m, w.options(m, &out))
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 1 || !strings.Contains(out.String(), "OSError: [Errno 5] Input/output error") || !strings.Contains(out.String(), "file="+w.dir+"/enc/data/model.bin") {
		t.Errorf("exit status %d, output:\n%s", res.ExitCode, out.String())
	}
}

// TestAbsentFiles: the file of a single-file encrypted mount that does not exist looks absent to
// the workload and exists on the host only once the workload makes it, bound to its path; an
// encrypted folder that does not exist stops the start, naming it.
// TestAbsentFileOverRoot: an absent encrypted file whose path the root (the folder ppml runs
// in, served unchecked under allow_all_but_log) already holds: the mount hides the root's file,
// as in Gramine, and the workload makes the encrypted file; the host's file is left as it was.
func TestAbsentFileOverRoot(t *testing.T) {
	slow(t)
	w := newWorld(t, map[string]string{"over.py": `import os
print(os.path.exists("/made.txt"))
open("/made.txt", "w").write("made by the workload")
`})
	if err := os.WriteFile("made.txt", []byte("the host's own"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir("enc", 0o755); err != nil {
		t.Fatal(err)
	}
	m := w.manifest(`loader.argv = ["python3", "/app/over.py"]`, `
  { path = "/made.txt", uri = "file:enc/made.txt", type = "encrypted" },`, provisioning(w.addr), `"file:/usr/lib/python3.11/",`)
	w.servePolicy(fmt.Sprintf(`[[workload]]
name = "test"
tee = "sgx"
mrenclave = ["%x"]
keys = ["default", "model"]
allow_simulated = true
`, manifest.Measure(m)), nil)
	var out bytes.Buffer
	res, err := sandbox.Run(context.Background(), m, w.options(m, &out))
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("%v, %v\n%s", res, err, out.String())
	}
	if out.String() != "False\n" {
		t.Errorf("the workload saw /made.txt: %q", out.String())
	}
	if got := w.decrypt("enc/made.txt", w.keys["default"]); string(got) != "made by the workload" {
		t.Errorf("enc/made.txt holds %q", got)
	}
	if b, _ := os.ReadFile("made.txt"); string(b) != "the host's own" {
		t.Errorf("the host's made.txt holds %q", b)
	}
}

func TestAbsentFiles(t *testing.T) {
	slow(t)
	w := newWorld(t, map[string]string{"absent.py": `import os, sys
print(os.path.exists("/made.txt"), os.path.exists("/left.txt"))
try:
    open("/left.txt").read()
except OSError as e:
    print("read", e.strerror)
if sys.argv[1] == "make":
    open("/made.txt", "w").write("made by the workload")
`})
	mounts := `
  { path = "/made.txt", uri = "file:made.txt", type = "encrypted" },
  { path = "/left.txt", uri = "file:left.txt", type = "encrypted" },`
	// Under strict, as the tutorial: the root, which holds the trusted app/, is served checked.
	w.policy = manifest.Strict
	runs := map[string]*manifest.Manifest{}
	for _, arg := range []string{"look", "make"} {
		runs[arg] = w.manifest(`loader.argv = ["python3", "/app/absent.py", "`+arg+`"]`, mounts, provisioning(w.addr), `"file:/usr/lib/python3.11/",`)
	}
	folder := w.manifest(`loader.argv = ["python3", "-c", "pass"]`, `
  { path = "/out/", uri = "file:out/", type = "encrypted" },`, provisioning(w.addr), "")
	var measurements []string
	for _, m := range []*manifest.Manifest{runs["look"], runs["make"], folder} {
		measurements = append(measurements, fmt.Sprintf("%q", fmt.Sprintf("%x", manifest.Measure(m))))
	}
	w.servePolicy(fmt.Sprintf(`[[workload]]
name = "test"
tee = "sgx"
mrenclave = [%s]
keys = ["default", "model"]
allow_simulated = true
`, strings.Join(measurements, ", ")), nil)

	for _, arg := range []string{"look", "make"} {
		var out bytes.Buffer
		res, err := sandbox.Run(context.Background(), runs[arg], w.options(runs[arg], &out))
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("%s: %v, %v\n%s", arg, res, err, out.String())
		}
		if want := "False False\nread No such file or directory\n"; out.String() != want {
			t.Errorf("%s: the workload saw\n%s\nwant\n%s", arg, out.String(), want)
		}
		_, err = os.Stat("made.txt")
		if made := err == nil; made != (arg == "make") {
			t.Errorf("%s: made.txt on the host: %v", arg, err)
		}
		if _, err := os.Stat("left.txt"); err == nil {
			t.Errorf("%s: left.txt was made on the host", arg)
		}
	}
	if got := w.decrypt("made.txt", w.keys["default"]); string(got) != "made by the workload" {
		t.Errorf("made.txt holds %q", got)
	}

	if _, err := sandbox.Run(context.Background(), folder, w.options(folder, &bytes.Buffer{})); err == nil || !strings.Contains(err.Error(), "the encrypted folder file:out/ does not exist: make it (mkdir -p out/) before ppml run") {
		t.Errorf("an absent encrypted folder: %v", err)
	}
	if _, err := os.Stat("out"); err == nil {
		t.Error("out was made on the host")
	}
}
