// The examples run end to end, as make test and CI run them: the PyTorch PPML tutorial's flow
// as the demo runs it (scripts/demo.sh, with examples/pytorch), and the confidential training
// (examples/training/run.sh). Each runs in a folder of its own, with a ppml built for the test
// and a provisioning server on a free port. They need root and /dev/fuse, like ppml run, and
// Debian's PyTorch, which scripts/setup.sh installs; in short mode they are skipped.
package examples_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ppml/ppml/internal/capture"
)

const python = "/usr/bin/python3"

// ppmlDir is the folder of the ppml binary that TestMain builds.
var ppmlDir string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "ppml-examples-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ppmlDir = dir
		return m.Run()
	}()
	os.Exit(code)
}

// setup skips the test where the examples cannot run, fails it where Debian's PyTorch is
// missing, builds ppml the first time and returns the repository's root.
func setup(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end example: not in short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for ppml run's mount namespaces and FUSE")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("needs /dev/fuse")
	}
	if out, err := exec.Command(python, "-c", "import torch, torchvision, sklearn, PIL").CombinedOutput(); err != nil {
		t.Fatalf("Debian's PyTorch is missing (scripts/setup.sh, which make test runs, installs it): %v\n%s", err, out)
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	trackInputs(t, repo)
	bin := filepath.Join(ppmlDir, "ppml")
	if _, err := os.Stat(bin); err != nil {
		gobin := "/usr/local/go/bin/go" // where the README installs Go
		if p, err := exec.LookPath("go"); err == nil {
			gobin = p
		}
		cmd := exec.Command(gobin, "build", "-o", bin, "./cmd/ppml")
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build ./cmd/ppml: %v\n%s", err, out)
		}
	}
	return repo
}

// trackInputs looks at every file that the examples' runs depend on but the test binary does not:
// ppml's sources, which the test builds, and the scripts, templates and workloads, which it runs.
// go test records what a test looks at, so that a change to any of them runs the test again
// instead of reusing a cached result.
func trackInputs(t *testing.T, repo string) {
	t.Helper()
	err := filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, p)
		switch {
		case d.IsDir() && (rel == "demo" || rel == "bin" || rel == "testdata" || strings.HasPrefix(d.Name(), ".")):
			return filepath.SkipDir
		case d.IsDir():
			return nil
		case strings.HasSuffix(p, ".go") || rel == "go.mod" || rel == "go.sum" ||
			strings.HasPrefix(rel, "scripts/") || strings.HasPrefix(rel, "examples/"):
			_, err := os.Stat(p)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// freePort returns a port on 127.0.0.1 that nothing listens on.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// runScript runs a script of the repository with the test's ppml and server port, and returns
// its output.
func runScript(t *testing.T, repo string, env []string, script string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(repo, script), args...)
	cmd.Env = append(os.Environ(), append(env, "PPML_BIN="+ppmlDir, "PPML_DEMO_PORT="+freePort(t))...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// TestPyTorchDemo runs the demo, the tutorial's flow with the inference workload, and checks
// that the result it decrypts equals, byte for byte, what a native run of the unchanged script
// writes on the plaintext files, and that the changed script was refused: by the sandbox when
// the workload opened it under the approved manifest, and by the demo's server under its own: on
// the simulated SGX platform (MRENCLAVE is the manifest's measurement), and on simulated TDX and
// SEV-SNP platforms (PPML_DEMO_TEE), whose policy names the VM image and the manifest.
func TestPyTorchDemo(t *testing.T) {
	repo := setup(t)
	for _, tc := range []struct{ tee, refusal string }{
		{"sim", "reason: no workload admits it (pytorch: mrenclave "},
		{"tdx", "reason: no workload admits it (pytorch: manifest "},
		{"snp", "reason: no workload admits it (pytorch: manifest "},
	} {
		t.Run(tc.tee, func(t *testing.T) { testPyTorchDemo(t, repo, tc.tee, tc.refusal) })
	}
}

func testPyTorchDemo(t *testing.T, repo, tee, refusal string) {
	demo := filepath.Join(t.TempDir(), "demo")
	out := runScript(t, repo, []string{"PPML_DEMO_DIR=" + demo, "PPML_DEMO_TEE=" + tee}, "scripts/demo.sh")

	got, err := os.ReadFile(filepath.Join(demo, "plaintext", "result.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := nativeInference(t, repo, filepath.Join(demo, "plaintext"))
	if !bytes.Equal(got, want) {
		t.Errorf("the confidential run's result.txt is\n%s\nthe native run's\n%s", got, want)
	}
	// Python's str() of five (label, percent) pairs, with no newline at the end.
	if !regexp.MustCompile(`^\[(\('[^']+', [0-9.e-]+\), ){4}\('[^']+', [0-9.e-]+\)\]$`).Match(got) {
		t.Errorf("result.txt is not a list of five (label, percent) pairs: %q", got)
	}
	encrypted, err := os.ReadFile(filepath.Join(demo, "result.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(encrypted, got[:10]) {
		t.Error("the result on the untrusted machine holds plaintext")
	}

	for _, want := range []string{
		"Done. The result was written to `result.txt`.",
		`msg="trustfs: trusted file refused: its SHA-256 is not the manifest's" file=` + demo + "/pytorchexample.py sha256=",
		"can't open file '//pytorchexample.py': [Errno 13] Permission denied",
		"the server refused: see audit record ",
		refusal,
		"the confidential result is identical, byte for byte, to the native run's",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out)
		}
	}
	// To the approved run, and to the approved manifest's run, whose sandbox then refused the
	// changed script.
	if strings.Count(out, " allow ") != 2 {
		t.Errorf("the server released the key %d times, want twice:\n%s", strings.Count(out, " allow "), out)
	}
}

// nativeInference runs examples/pytorch/pytorchexample.py natively, in a folder of its own,
// on the plaintext model, image and classes in plain, and returns the result.txt it writes.
func nativeInference(t *testing.T, repo, plain string) []byte {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"alexnet-pretrained.pt", "input.jpg", "classes.txt"} {
		if err := os.Symlink(filepath.Join(plain, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	script, err := os.ReadFile(filepath.Join(repo, "examples", "pytorch", "pytorchexample.py"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pytorchexample.py"), script, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "pytorchexample.py")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("native run: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "result.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTraining runs the confidential training and evaluation, and checks the accuracy that the
// owner decrypts.
func TestTraining(t *testing.T) {
	repo := setup(t)
	dir := filepath.Join(t.TempDir(), "training")
	out := runScript(t, repo, nil, "examples/training/run.sh", dir)

	evaluation, err := os.ReadFile(filepath.Join(dir, "plaintext", "evaluation.txt"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^accuracy ([0-9.]+) \(\d+ of 450 test images\)\n$`).FindSubmatch(evaluation)
	if m == nil {
		t.Fatalf("evaluation.txt: %q\n%s", evaluation, out)
	}
	accuracy, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("accuracy %.4f", accuracy)
	if accuracy <= 0.95 {
		t.Errorf("accuracy %.4f, want above 0.95", accuracy)
	}
	for _, name := range []string{"output/model.pt", "output/evaluation.txt", "data/train.npz"} {
		b, err := os.ReadFile(filepath.Join(dir, "enc", name))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("accuracy")) || bytes.Contains(b, []byte("PK\x03\x04")) {
			t.Errorf("enc/%s holds plaintext", name)
		}
	}
}

// TestDistributed runs the distributed training on two nodes, each in a network namespace of
// its own, while it captures the packets on node 0's veth in the host's namespace, and checks
// the accuracy, that the canary that the nodes exchanged never crossed the veth in plaintext,
// that a node whose script changed was refused and the other stopped, and that a node's death
// ended the job on the other.
func TestDistributed(t *testing.T) {
	repo := setup(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("needs /dev/net/tun")
	}
	dir := filepath.Join(t.TempDir(), "distributed")
	prefix := fmt.Sprintf("ppt%d", os.Getpid()%100000)
	subnet := fmt.Sprintf("10.232.%d", os.Getpid()%250) // the bridge's, apart from other runs'
	canary := fmt.Sprintf("canary-%x", time.Now().UnixNano())
	veth := prefix + "-h0"
	captured, stopCapture := make(chan capture.Result, 1), make(chan struct{}, 1)
	go func() {
		for range 600 { // the script makes the veth first thing
			if c, err := capture.Start(veth, []byte(canary)); err == nil {
				<-stopCapture
				captured <- c.Stop()
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		captured <- capture.Result{}
	}()
	// Jumbo frames: the mesh's MTU follows the veths', and its large packets are captured too.
	out := runScript(t, repo, []string{"PPML_NET=" + prefix, "PPML_SUBNET=" + subnet, "PPML_MTU=9000", "PPML_CANARY=" + canary}, "examples/distributed/run.sh", dir)
	stopCapture <- struct{}{}
	seen := <-captured

	m := regexp.MustCompile(`accuracy: distributed ([0-9.]+), single node ([0-9.]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no accuracy in the output:\n%s", out)
	}
	t.Logf("accuracy: distributed %s, single node %s; captured on %s: %+v", m[1], m[2], veth, seen)
	if seen.UDP == 0 {
		t.Errorf("no WireGuard packet crossed %s", veth)
	}
	if seen.Found {
		t.Errorf("the canary crossed %s in plaintext", veth)
	}
	for _, want := range []string{
		"node 1: canary received",
		"node 1: ppml: keys default from " + subnet + ".254:", // refused: for its keys, before it could join
		"mtu=8920", // the mesh's: the veths' 9000 less WireGuard's 80
		`node 0, after `,
		`only 1 of its 2 nodes joined within join_timeout (20s)`,
		"Timed out waiting 30000ms for recv operation to complete",
		`joined job "digits" as node 1 of 2, mesh address 10.77.0.2/24`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q:\n%s", want, out)
		}
	}
}
