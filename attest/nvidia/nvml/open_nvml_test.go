//go:build nvml && linux && (amd64 || arm64)

package nvml

import (
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebitengine/purego"

	"github.com/ppml/ppml/attest/nvidia"
)

// fakeLibrary compiles testdata/fakenvml.c into a shared library, with the C compiler's flags
// given, and returns its path.
func fakeLibrary(t *testing.T, flags ...string) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("needs a C compiler for the fake libnvidia-ml.so.1")
	}
	lib := filepath.Join(t.TempDir(), "libnvidia-ml.so.1")
	args := append([]string{"-shared", "-fPIC", "-Wall", "-Werror", "-o", lib, "testdata/fakenvml.c"}, flags...)
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	return lib
}

// TestLibrary loads NVML from a C library built from nvml.h's declarations, through purego, and
// checks that the nonce reaches it where nvml.h puts it, that the evidence and chain it returns
// come back whole and verify, and that the ready state reaches it.
func TestLibrary(t *testing.T) {
	lib := fakeLibrary(t)
	d := newDriver(t, 1)
	nonce := [32]byte{0xC0, 0xFF, 0xEE, 31: 0x42}
	ev, err := d.sim.AttestGPUs(nonce)
	if err != nil {
		t.Fatal(err)
	}
	var chain []byte
	for _, der := range ev[0].CertChain {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	chain = append(chain, 0) // as a driver may count the NUL

	h, err := purego.Dlopen(lib, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		t.Fatal(err)
	}
	var set func(*byte, uint32, *byte, uint32, uint32)
	var gotNonce func(*byte)
	var ready func() uint32
	purego.RegisterLibFunc(&set, h, "fake_set")
	purego.RegisterLibFunc(&gotNonce, h, "fake_nonce")
	purego.RegisterLibFunc(&ready, h, "fake_ready")
	set(&ev[0].Evidence[0], uint32(len(ev[0].Evidence)), &chain[0], uint32(len(chain)), 1)

	g, err := openLibrary(lib)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Count() != 1 || !g.State.CC || g.State.Environment != 2 {
		t.Fatalf("%d GPUs, %s", g.Count(), g.State)
	}
	gpus, err := g.AttestGPUs(nonce)
	if err != nil {
		t.Fatal(err)
	}
	var asked [32]byte
	gotNonce(&asked[0])
	if asked != nonce {
		t.Errorf("the library was asked for nonce %x, want %x", asked, nonce)
	}
	if _, _, err := nvidia.VerifyAnchored(gpus[0].Evidence, gpus[0].CertChain, []nvidia.Anchor{d.sim.Anchor()}, nvidia.Options{Time: time.Now(), Nonce: nonce[:]}); err != nil {
		t.Errorf("the evidence does not verify: %v", err)
	}
	if ready() != 0 {
		t.Fatal("ready before SetReady")
	}
	if err := g.SetReady(); err != nil || ready() != 1 {
		t.Errorf("SetReady: %v, ready state %d", err, ready())
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	// Shut down, the library refuses, and says so.
	if _, err := g.AttestGPUs(nonce); err == nil || !strings.Contains(err.Error(), "GPU 0: nvmlDeviceGetConfComputeGpuCertificate: Uninitialized (NVML error 1)") {
		t.Errorf("after Close: %v", err)
	}

	// CC off.
	set(&ev[0].Evidence[0], uint32(len(ev[0].Evidence)), &chain[0], uint32(len(chain)), 0)
	if _, err := openLibrary(lib); err == nil || !strings.Contains(err.Error(), "the GPUs are not in confidential-computing mode (CC mode off") {
		t.Errorf("CC off: %v", err)
	}
}

// TestLibraryTooOld checks the error for a library without one of the functions ppml calls.
func TestLibraryTooOld(t *testing.T) {
	lib := fakeLibrary(t, "-DNO_READY")
	_, err := openLibrary(lib)
	want := lib + " has no nvmlSystemSetConfComputeGpusReadyState: the NVIDIA driver is too old for confidential computing (R535 or later)"
	if err == nil || err.Error() != want {
		t.Errorf("openLibrary: %v, want %q", err, want)
	}
}

// TestNoLibrary checks the error where NVML is not installed.
func TestNoLibrary(t *testing.T) {
	_, err := openLibrary(filepath.Join(t.TempDir(), "libnvidia-ml.so.1"))
	if err == nil || !strings.Contains(err.Error(), "NVIDIA's management library: ") || !strings.Contains(err.Error(), "(install the NVIDIA driver, R535 or later, in this VM)") {
		t.Errorf("openLibrary: %v", err)
	}
	if _, err := os.Stat("/dev/nvidiactl"); err == nil {
		t.Skip("an NVIDIA driver is here")
	}
	if _, err := Open(); err == nil || !strings.HasPrefix(err.Error(), "load libnvidia-ml.so.1, NVIDIA's management library: ") {
		t.Errorf("Open: %v", err)
	}
}
