package ratls

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/nvidia"
	"github.com/ppml/ppml/attest/sim"
	simgpu "github.com/ppml/ppml/attest/sim/gpu"
)

// A certificate made with GPUs carries their evidence beside the CPU's, each GPU's nonce the
// key binding of the CPU evidence; the CPU part verifies as before.
func TestGPUEvidenceInCertificate(t *testing.T) {
	p := newPlatform(t)
	g, err := simgpu.Init(p.Dir, simgpu.Settings{Count: 2}, simTime)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := NewCertificate(attest.WithGPUs{Attester: sim.Attester{Platform: p, Enclave: enclave}, GPUs: g})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(context.Background(), cert.Leaf, simRegistry(t, p), simTime); err != nil {
		t.Fatalf("the CPU evidence: %v", err)
	}
	gpus, nonce, err := GPUEvidence(cert.Leaf)
	if err != nil || len(gpus) != 2 {
		t.Fatalf("%d GPUs, %v", len(gpus), err)
	}
	ev, _ := ExtractEvidence(cert.Leaf)
	if nonce != ev.Binding {
		t.Errorf("nonce %x, want the binding %x", nonce, ev.Binding)
	}
	for i, e := range gpus {
		if _, _, err := nvidia.VerifyAnchored(e.Evidence, e.CertChain, []nvidia.Anchor{g.Anchor()}, nvidia.Options{Time: simTime, Nonce: nonce[:]}); err != nil {
			t.Errorf("GPU %d: %v", i, err)
		}
	}

	// Without GPUs there is no GPU extension, and none is found.
	plain := newSimCert(t, p)
	if extension(plain.Leaf, oidGPUEvidence) != nil {
		t.Error("a certificate without GPUs has the GPU extension")
	}
	if gpus, _, err := GPUEvidence(plain.Leaf); gpus != nil || err != nil {
		t.Errorf("without GPUs: %v, %v", gpus, err)
	}
	// A damaged extension is an error.
	bad := withExtension(cert.Leaf, oidGPUEvidence, []byte{0x81, 0x41, 0})
	if _, _, err := GPUEvidence(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("damaged: %v", err)
	}
}

// gpuCount attests a fixed number of GPUs.
type gpuCount int

func (n gpuCount) AttestGPUs([32]byte) ([]attest.GPUEvidence, error) {
	return slices.Repeat([]attest.GPUEvidence{{Evidence: []byte{1}, CertChain: [][]byte{{2}}}}, int(n)), nil
}

func TestGPUExtensionBounds(t *testing.T) {
	for _, n := range []int{0, MaxGPUs + 1} {
		if _, err := gpuExtension(gpuCount(n), [32]byte{}); err == nil {
			t.Errorf("%d GPUs: no error", n)
		}
	}
	ext, err := gpuExtension(gpuCount(MaxGPUs), [32]byte{})
	if err != nil {
		t.Fatal(err)
	}
	gpus, err := parseGPUEvidence(ext.Value)
	if err != nil || len(gpus) != MaxGPUs || !bytes.Equal(gpus[3].CertChain[0], []byte{2}) {
		t.Fatalf("%v, %v", gpus, err)
	}
}

// FuzzGPUEvidence parses the GPU extension.
func FuzzGPUEvidence(f *testing.F) {
	for _, n := range []int{1, 3} {
		ext, err := gpuExtension(gpuCount(n), [32]byte{})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ext.Value)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		gpus, err := parseGPUEvidence(b)
		if err != nil {
			if gpus != nil || !isParseError(err) {
				t.Fatalf("GPUs %v, error %v", gpus, err)
			}
			return
		}
		if len(gpus) == 0 || len(gpus) > MaxGPUs {
			t.Fatalf("%d GPUs", len(gpus))
		}
		for _, g := range gpus {
			if len(g.CertChain) == 0 {
				t.Fatal("a GPU without certificates")
			}
		}
	})
}
