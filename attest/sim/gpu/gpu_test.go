package gpu

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/nvidia"
)

func rimsOf(t *testing.T, g *GPUs) [][]byte {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(g.Dir, RIMDir))
	if err != nil {
		t.Fatal(err)
	}
	var rims [][]byte
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(g.Dir, RIMDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		rims = append(rims, b)
	}
	return rims
}

// The simulated GPUs' evidence verifies with attest/nvidia, with their RIMs, only under the
// simulated anchor, and only for its nonce.
func TestSimulatedGPUsVerify(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	if _, err := Init(dir, Settings{Count: 2}, now); err != nil {
		t.Fatal(err)
	}
	g, err := Load(dir) // what is verified is what the folder holds
	if err != nil {
		t.Fatal(err)
	}
	nonce := [32]byte{1, 2, 3}
	gpus, err := g.AttestGPUs(nonce)
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) != 2 {
		t.Fatalf("%d GPUs, want 2", len(gpus))
	}
	rims := rimsOf(t, g)
	anchors := []nvidia.Anchor{nvidia.NVIDIAAnchor(), g.Anchor()}
	for i, e := range gpus {
		v, platform, err := nvidia.VerifyAnchored(e.Evidence, e.CertChain, anchors, nvidia.Options{Time: now, Nonce: nonce[:], RIMs: rims, RequireRIMs: true})
		if err != nil {
			t.Fatalf("GPU %d: %v", i, err)
		}
		if platform != attest.Simulated || v.Arch != "Hopper" || v.Measurements != nvidia.MeasurementsMatch ||
			v.Evidence.Response.Opaque.DriverVersion() != DefaultDriver || v.Evidence.Response.Opaque.VBIOSVersion() != DefaultVBIOS {
			t.Errorf("GPU %d: platform %s, arch %q, measurements %s, driver %s, VBIOS %s", i, platform, v.Arch, v.Measurements,
				v.Evidence.Response.Opaque.DriverVersion(), v.Evidence.Response.Opaque.VBIOSVersion())
		}
	}
	// Under NVIDIA's roots alone, they are untrusted.
	_, _, err = nvidia.VerifyAnchored(gpus[0].Evidence, gpus[0].CertChain, anchors[:1], nvidia.Options{Time: now, Nonce: nonce[:]})
	if !errors.Is(err, nvidia.ErrUntrusted) {
		t.Errorf("under NVIDIA's roots: %v, want untrusted", err)
	}
	// Another nonce is refused.
	other := [32]byte{9}
	_, _, err = nvidia.VerifyAnchored(gpus[0].Evidence, gpus[0].CertChain, anchors, nvidia.Options{Time: now, Nonce: other[:]})
	var e *nvidia.Error
	if !errors.As(err, &e) || e.Step != nvidia.StepNonce {
		t.Errorf("another nonce: %v, want a nonce error", err)
	}
	// A second Init refuses to replace the GPUs.
	if _, err := Init(dir, Settings{Count: 1}, now); err == nil {
		t.Error("a second Init succeeded")
	}
}

// A GPU in devtools mode does not match its production RIMs.
func TestDevtoolsMismatch(t *testing.T) {
	now := time.Now()
	g, err := Init(t.TempDir(), Settings{Count: 1, Mode: ModeDevtools}, now)
	if err != nil {
		t.Fatal(err)
	}
	nonce := [32]byte{7}
	gpus, err := g.AttestGPUs(nonce)
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := nvidia.VerifyAnchored(gpus[0].Evidence, gpus[0].CertChain, []nvidia.Anchor{g.Anchor()}, nvidia.Options{Time: now, Nonce: nonce[:], RIMs: rimsOf(t, g)})
	if !errors.Is(err, nvidia.ErrMismatch) || v == nil || !slices.Equal(v.Mismatched, []int{devtoolsIndex}) {
		t.Fatalf("devtools: %v, verdict %+v", err, v)
	}
}

func TestInitRefusesBadSettings(t *testing.T) {
	for _, s := range []Settings{
		{Count: 0}, {Count: 17}, {Count: 1, Mode: "debug"}, {Count: 1, DriverVersion: "550.x"},
		{Count: 1, VBIOSVersion: "96.00.9f"}, {Count: 1, VBIOSVersion: "96.00.9f.00.zz"},
	} {
		dir := t.TempDir()
		if _, err := Init(dir, s, time.Now()); err == nil {
			t.Errorf("%+v: no error", s)
		}
		if _, err := os.Stat(filepath.Join(dir, Dir)); err == nil {
			t.Errorf("%+v: left a GPU folder", s)
		}
	}
	if _, err := Load(t.TempDir()); !errors.Is(err, ErrNoGPUs) {
		t.Error("Load of a platform without GPUs succeeded")
	}
}
