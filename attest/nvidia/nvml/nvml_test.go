package nvml

import (
	"encoding/binary"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/nvidia"
	simgpu "github.com/ppml/ppml/attest/sim/gpu"
)

// driver is a fake NVML over simulated GPUs: it fills the structures at the offsets nvml.h gives
// them, written out here as numbers, apart from the package's constants.
type driver struct {
	sim     *simgpu.GPUs
	state   [3]uint32 // environment, ccFeature, devToolsMode
	fail    map[string]int32
	calls   []string
	nonces  [][32]byte // the nonces the reports were asked for
	ready   []uint32   // the ready states set
	pemTail string     // appended to the certificate chain
	report  func([]byte) []byte
}

func newDriver(t *testing.T, gpus int) *driver {
	t.Helper()
	dir := t.TempDir()
	if _, err := simgpu.Init(dir, simgpu.Settings{Count: gpus}, time.Now()); err != nil {
		t.Fatal(err)
	}
	sim, err := simgpu.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &driver{sim: sim, state: [3]uint32{2, 1, 0}, fail: map[string]int32{}}
}

// call records fn and returns the error code the test set for it.
func (d *driver) call(fn string) int32 {
	d.calls = append(d.calls, fn)
	return d.fail[fn]
}

func (d *driver) api() *api {
	le := binary.LittleEndian
	return &api{
		init:        func() int32 { return d.call("init") },
		shutdown:    func() int32 { return d.call("shutdown") },
		errorString: func(code int32) string { return "fake error" },
		deviceCount: func(n *uint32) int32 {
			*n = uint32(d.sim.Settings.Count)
			return d.call("count")
		},
		deviceHandle: func(i uint32, h *uintptr) int32 {
			*h = uintptr(0x1000 + i)
			return d.call("handle")
		},
		ccState: func(p *byte) int32 {
			b := unsafe.Slice(p, 12)
			for i, v := range d.state {
				le.PutUint32(b[4*i:], v)
			}
			return d.call("state")
		},
		certificate: func(h uintptr, p *byte) int32 {
			b := unsafe.Slice(p, 9224)
			ev, err := d.sim.AttestGPUs([32]byte{})
			if err != nil {
				panic(err)
			}
			var chain []byte
			for _, der := range ev[h-0x1000].CertChain {
				chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
			}
			chain = append(chain, d.pemTail...)
			le.PutUint32(b[0:], 0) // certChainSize: the other chain, unused
			le.PutUint32(b[4:], uint32(len(chain)))
			copy(b[8+4096:], chain)
			return d.call("certificate")
		},
		attestationReport: func(h uintptr, p *byte) int32 {
			b := unsafe.Slice(p, 12332)
			nonce := [32]byte(b[12:44])
			d.nonces = append(d.nonces, nonce)
			ev, err := d.sim.AttestGPUs(nonce)
			if err != nil {
				panic(err)
			}
			report := ev[h-0x1000].Evidence
			if d.report != nil {
				report = d.report(report)
			}
			le.PutUint32(b[0:], 0) // no CEC report
			le.PutUint32(b[4:], uint32(len(report)))
			copy(b[44:], report)
			return d.call("report")
		},
		setReady: func(v uint32) int32 {
			d.ready = append(d.ready, v)
			return d.call("ready")
		},
	}
}

// TestAttestGPUs checks that the evidence collected through NVML's structures verifies with
// attest/nvidia for the nonce asked, and that the ready state is set only when asked.
func TestAttestGPUs(t *testing.T) {
	d := newDriver(t, 2)
	g, err := open(d.api())
	if err != nil {
		t.Fatal(err)
	}
	if g.Count() != 2 || g.State.String() != "CC mode on, environment production" {
		t.Errorf("%d GPUs, %s", g.Count(), g.State)
	}
	nonce := [32]byte{0xAA, 1, 2, 3, 31: 0xBB}
	gpus, err := g.AttestGPUs(nonce)
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) != 2 || len(d.nonces) != 2 || d.nonces[0] != nonce || d.nonces[1] != nonce {
		t.Fatalf("%d GPUs, the driver was asked for %x", len(gpus), d.nonces)
	}
	for i, e := range gpus {
		v, platform, err := nvidia.VerifyAnchored(e.Evidence, e.CertChain, []nvidia.Anchor{d.sim.Anchor()}, nvidia.Options{Time: time.Now(), Nonce: nonce[:]})
		if err != nil || platform != attest.Simulated || v.Arch != "Hopper" {
			t.Errorf("GPU %d: %v, %v", i, platform, err)
		}
		if len(e.CertChain) != 3 {
			t.Errorf("GPU %d: chain of %d certificates, want 3", i, len(e.CertChain))
		}
	}
	if len(d.ready) != 0 {
		t.Fatalf("ready state set before SetReady: %v", d.ready)
	}
	if err := g.SetReady(); err != nil || len(d.ready) != 1 || d.ready[0] != 1 {
		t.Errorf("SetReady: %v, ready states set %v", err, d.ready)
	}
	if err := g.Close(); err != nil || d.calls[len(d.calls)-1] != "shutdown" {
		t.Errorf("Close: %v, calls %v", err, d.calls)
	}
}

// TestOpenRefuses checks the errors of Open: NVML's, with what to do, and GPUs not in CC mode;
// NVML is shut down again after a failure past its initialisation.
func TestOpenRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state [3]uint32
		fail  map[string]int32
		want  string
	}{
		{"CC off", [3]uint32{2, 0, 0}, nil, "the GPUs are not in confidential-computing mode (CC mode off, environment production): turn it on from the host"},
		{"init", [3]uint32{2, 1, 0}, map[string]int32{"init": 9}, "nvmlInit_v2: fake error (NVML error 9): load the NVIDIA driver"},
		{"no CC support", [3]uint32{2, 1, 0}, map[string]int32{"state": 3}, "nvmlSystemGetConfComputeState: fake error (NVML error 3): the GPU or its driver does not support confidential computing"},
		{"handle", [3]uint32{2, 1, 0}, map[string]int32{"handle": 15}, "GPU 0: nvmlDeviceGetHandleByIndex_v2: fake error (NVML error 15): the GPU fell off the bus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t, 1)
			d.state = tc.state
			if tc.fail != nil {
				d.fail = tc.fail
			}
			_, err := open(d.api())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("open: %v, want %q", err, tc.want)
			}
			if shut := d.calls[len(d.calls)-1] == "shutdown"; shut != (tc.name != "init") {
				t.Errorf("calls %v", d.calls)
			}
		})
	}
}

// TestAttestRefuses checks that a report or chain the driver gets wrong is an error naming the
// GPU, never evidence.
func TestAttestRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		report func([]byte) []byte
		tail   string
		fail   map[string]int32
		want   string
	}{
		{"other nonce", func(b []byte) []byte { b[4] ^= 1; return b }, "", nil, "GPU 1: the attestation report answers nonce aa00"},
		{"not SPDM", func(b []byte) []byte { return []byte("not a report at all, not a report at all") }, "", nil, "GPU 0: attestation report: GPU evidence format: malformed"},
		{"report too long", func(b []byte) []byte { return make([]byte, 0x2001) }, "", nil, "claims a 8193-byte attestation report; it holds 8192 at most"},
		{"chain text", nil, "junk", nil, "GPU 0: attestation certificate chain: "},
		{"report call", nil, "", map[string]int32{"report": 4}, "GPU 0: nvmlDeviceGetConfComputeGpuAttestationReport: fake error (NVML error 4): run as root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t, 2)
			g, err := open(d.api())
			if err != nil {
				t.Fatal(err)
			}
			d.pemTail, d.fail = tc.tail, map[string]int32{}
			for k, v := range tc.fail {
				d.fail[k] = v
			}
			if tc.report != nil {
				n := 0
				d.report = func(b []byte) []byte {
					if n++; n == 2 || tc.name != "other nonce" {
						return tc.report(b)
					}
					return b
				}
			}
			gpus, err := g.AttestGPUs([32]byte{0xAB})
			if err == nil || !strings.Contains(err.Error(), tc.want) || gpus != nil {
				t.Errorf("AttestGPUs: %d GPUs, %v; want %q", len(gpus), err, tc.want)
			}
		})
	}
}

// TestDecode checks the decoding of the structures' sizes at their edges: a terminating NUL is
// dropped from the chain, nothing is read past the array, and an empty one is an error.
func TestDecode(t *testing.T) {
	cert := make([]byte, 9224)
	if _, err := decodeCertificate(cert); err == nil || !strings.Contains(err.Error(), "gave no attestation certificate chain") {
		t.Errorf("empty chain: %v", err)
	}
	binary.NativeEndian.PutUint32(cert[4:], 5120)
	copy(cert[4104:], "PEM")
	cert[4104+5119] = 0
	got, err := decodeCertificate(cert)
	if err != nil || string(got) != "PEM" {
		t.Errorf("full chain: %q, %v", got, err)
	}
	binary.NativeEndian.PutUint32(cert[4:], 5121)
	if _, err := decodeCertificate(cert); err == nil || !strings.Contains(err.Error(), "claims a 5121-byte attestation certificate chain; it holds 5120 at most") {
		t.Errorf("too long: %v", err)
	}
	if _, err := decodeCertificate(cert[1:]); err == nil {
		t.Error("short structure decoded")
	}
	report := make([]byte, 12332)
	if _, err := decodeReport(report, [32]byte{}); err == nil || !strings.Contains(err.Error(), "gave no attestation report") {
		t.Errorf("empty report: %v", err)
	}
	if _, err := decodeReport(report[:100], [32]byte{}); err == nil {
		t.Error("short structure decoded")
	}
	if !errors.Is(ErrNotBuilt, ErrNotBuilt) || !strings.Contains(ErrNotBuilt.Error(), "-tags nvml") {
		t.Errorf("ErrNotBuilt = %v", ErrNotBuilt)
	}
}

// FuzzDecode feeds the decoders structures as a driver could fill them: they fail or return
// bytes from within the structure, never panic.
func FuzzDecode(f *testing.F) {
	f.Add(uint32(37), []byte{0x11, 0xE0, 0x01, 0xFF}, []byte("-----BEGIN CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, n uint32, report, chain []byte) {
		r := make([]byte, 12332)
		binary.NativeEndian.PutUint32(r[4:], n)
		copy(r[44:], report)
		if out, err := decodeReport(r, [32]byte{}); err == nil && len(out) > 8192 {
			t.Fatalf("%d-byte report", len(out))
		}
		c := make([]byte, 9224)
		binary.NativeEndian.PutUint32(c[4:], n)
		copy(c[4104:], chain)
		if out, err := decodeCertificate(c); err == nil && len(out) > 5120 {
			t.Fatalf("%d-byte chain", len(out))
		}
	})
}
