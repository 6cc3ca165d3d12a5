package nvml

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/nvidia"
)

// ErrNotBuilt is what [Open] returns in a ppml built without the nvml tag.
var ErrNotBuilt = errors.New("this ppml was built without NVML, which attesting the GPUs needs: build it with go build -tags nvml ./cmd/ppml")

// The layouts of nvml.h's structures, as C lays them out on Linux: unsigned int is 4 bytes, and
// these structures have no padding.
const (
	nonceSize        = 32     // NVML_CC_GPU_CEC_NONCE_SIZE
	reportSize       = 0x2000 // NVML_CC_GPU_ATTESTATION_REPORT_SIZE
	cecReportSize    = 0x1000 // NVML_CC_GPU_CEC_ATTESTATION_REPORT_SIZE
	certChainSize    = 0x1000 // NVML_GPU_CERT_CHAIN_SIZE
	attCertChainSize = 0x1400 // NVML_GPU_ATTESTATION_CERT_CHAIN_SIZE

	// nvmlConfComputeGpuAttestationReport_t: isCecAttestationReportPresent,
	// attestationReportSize, cecAttestationReportSize (unsigned int each), nonce[32],
	// attestationReport[0x2000], cecAttestationReport[0x1000].
	reportSizeAt     = 4
	reportNonceAt    = 12
	reportAt         = reportNonceAt + nonceSize
	reportStructSize = reportAt + reportSize + cecReportSize

	// nvmlConfComputeGpuCertificate_t: certChainSize, attestationCertChainSize (unsigned int
	// each), certChain[0x1000], attestationCertChain[0x1400].
	attCertChainSizeAt = 4
	attCertChainAt     = 8 + certChainSize
	certStructSize     = attCertChainAt + attCertChainSize

	// nvmlConfComputeSystemState_t: environment, ccFeature, devToolsMode (unsigned int each).
	stateStructSize = 12
)

// NVML_CC_ACCEPTING_CLIENT_REQUESTS_TRUE: the GPUs' ready state that lets them accept work.
const acceptingWork = 1

// api is the part of NVML that ppml calls, each field a function of nvml.h; structures go as
// pointers to byte buffers of their layout, and nvmlReturn_t comes back as an int32.
type api struct {
	init              func() int32                 // nvmlInit_v2
	shutdown          func() int32                 // nvmlShutdown
	errorString       func(int32) string           // nvmlErrorString
	deviceCount       func(*uint32) int32          // nvmlDeviceGetCount_v2
	deviceHandle      func(uint32, *uintptr) int32 // nvmlDeviceGetHandleByIndex_v2
	ccState           func(*byte) int32            // nvmlSystemGetConfComputeState
	certificate       func(uintptr, *byte) int32   // nvmlDeviceGetConfComputeGpuCertificate
	attestationReport func(uintptr, *byte) int32   // nvmlDeviceGetConfComputeGpuAttestationReport
	setReady          func(uint32) int32           // nvmlSystemSetConfComputeGpusReadyState
}

// Error is the failure of an NVML function.
type Error struct {
	Func string // the function, as nvml.h names it
	Code int32  // its nvmlReturn_t
	Text string // what nvmlErrorString says of Code
}

// What to do about the NVML errors that have a remedy.
var hints = map[int32]string{
	3:  "the GPU or its driver does not support confidential computing: it needs a Hopper GPU or later and driver R535 or later",
	4:  "run as root",
	9:  "load the NVIDIA driver (modprobe nvidia)",
	15: "the GPU fell off the bus: reset it or restart the VM",
	18: "the NVIDIA driver loaded is not the version of libnvidia-ml.so.1: reload the driver or restart the VM",
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s (NVML error %d)", e.Func, e.Text, e.Code)
	if h := hints[e.Code]; h != "" {
		s += ": " + h
	}
	return s
}

// check returns nil for NVML_SUCCESS, else an *Error for fn.
func (a *api) check(fn string, code int32) error {
	if code == 0 {
		return nil
	}
	return &Error{Func: fn, Code: code, Text: a.errorString(code)}
}

// State is the confidential-computing state of the system's GPUs (nvmlSystemGetConfComputeState).
type State struct {
	Environment uint32 // NVML_CC_SYSTEM_ENVIRONMENT_*: 0 unavailable, 1 simulated, 2 production
	CC          bool   // confidential computing on
	DevTools    bool   // devtools mode: CC with debugging and profiling, not for production
}

func (s State) String() string {
	mode := "off"
	switch {
	case s.CC && s.DevTools:
		mode = "devtools"
	case s.CC:
		mode = "on"
	}
	env := map[uint32]string{0: "unavailable", 1: "simulated", 2: "production"}[s.Environment]
	if env == "" {
		env = fmt.Sprint(s.Environment)
	}
	return fmt.Sprintf("CC mode %s, environment %s", mode, env)
}

func decodeState(b []byte) State {
	return State{
		Environment: binary.NativeEndian.Uint32(b[0:]),
		CC:          binary.NativeEndian.Uint32(b[4:]) != 0,
		DevTools:    binary.NativeEndian.Uint32(b[8:]) != 0,
	}
}

// GPUs are the GPUs of this system, through NVML. Close them when done.
type GPUs struct {
	api     *api
	devices []uintptr // nvmlDevice_t, in NVML's order
	State   State
}

// open initialises NVML through a and finds the GPUs, which must be in confidential-computing
// mode.
func open(a *api) (*GPUs, error) {
	if err := a.check("nvmlInit_v2", a.init()); err != nil {
		return nil, err
	}
	g, err := find(a)
	if err != nil {
		a.shutdown()
		return nil, err
	}
	return g, nil
}

func find(a *api) (*GPUs, error) {
	g := &GPUs{api: a}
	var st [stateStructSize]byte
	if err := a.check("nvmlSystemGetConfComputeState", a.ccState(&st[0])); err != nil {
		return nil, err
	}
	if g.State = decodeState(st[:]); !g.State.CC {
		return nil, fmt.Errorf("the GPUs are not in confidential-computing mode (%s): turn it on from the host, with NVIDIA's gpu-admin-tools (--set-cc-mode on)", g.State)
	}
	var n uint32
	if err := a.check("nvmlDeviceGetCount_v2", a.deviceCount(&n)); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, errors.New("NVML finds no GPU in this VM")
	}
	for i := range n {
		var d uintptr
		if err := a.check("nvmlDeviceGetHandleByIndex_v2", a.deviceHandle(i, &d)); err != nil {
			return nil, fmt.Errorf("GPU %d: %w", i, err)
		}
		g.devices = append(g.devices, d)
	}
	return g, nil
}

// Count returns the number of GPUs.
func (g *GPUs) Count() int { return len(g.devices) }

// AttestGPUs returns the evidence of every GPU, each answering nonce: the attestation report
// (checked to parse and to carry nonce) and the device certificate chain, DER, leaf first.
func (g *GPUs) AttestGPUs(nonce [32]byte) ([]attest.GPUEvidence, error) {
	out := make([]attest.GPUEvidence, len(g.devices))
	for i, d := range g.devices {
		chain, err := g.certChain(d)
		if err != nil {
			return nil, fmt.Errorf("GPU %d: %w", i, err)
		}
		ev, err := g.report(d, nonce)
		if err != nil {
			return nil, fmt.Errorf("GPU %d: %w", i, err)
		}
		out[i] = attest.GPUEvidence{Evidence: ev, CertChain: chain}
	}
	return out, nil
}

// SetReady lets the GPUs accept work (nvmlSystemSetConfComputeGpusReadyState): in
// confidential-computing mode they refuse it until told, which is to be done only once their
// evidence was accepted.
func (g *GPUs) SetReady() error {
	return g.api.check("nvmlSystemSetConfComputeGpusReadyState", g.api.setReady(acceptingWork))
}

// Close shuts NVML down.
func (g *GPUs) Close() error { return g.api.check("nvmlShutdown", g.api.shutdown()) }

func (g *GPUs) certChain(d uintptr) ([][]byte, error) {
	buf := make([]byte, certStructSize)
	if err := g.api.check("nvmlDeviceGetConfComputeGpuCertificate", g.api.certificate(d, &buf[0])); err != nil {
		return nil, err
	}
	p, err := decodeCertificate(buf)
	if err != nil {
		return nil, err
	}
	certs, err := nvidia.ParseChain(p)
	if err != nil {
		return nil, fmt.Errorf("attestation certificate chain: %w", err)
	}
	chain := make([][]byte, len(certs))
	for i, c := range certs {
		chain[i] = c.Raw
	}
	return chain, nil
}

func (g *GPUs) report(d uintptr, nonce [32]byte) ([]byte, error) {
	buf := make([]byte, reportStructSize)
	copy(buf[reportNonceAt:], nonce[:])
	if err := g.api.check("nvmlDeviceGetConfComputeGpuAttestationReport", g.api.attestationReport(d, &buf[0])); err != nil {
		return nil, err
	}
	return decodeReport(buf, nonce)
}

// array is a byte array of an NVML structure, whose length a field of the structure gives.
type array struct {
	fn      string // the function that fills the structure
	what    string // what the array holds
	size    int    // the structure's size
	lenAt   int    // the offset of the length (unsigned int)
	at, max int    // the array's offset and capacity
}

var (
	certArray   = array{"nvmlDeviceGetConfComputeGpuCertificate", "attestation certificate chain", certStructSize, attCertChainSizeAt, attCertChainAt, attCertChainSize}
	reportArray = array{"nvmlDeviceGetConfComputeGpuAttestationReport", "attestation report", reportStructSize, reportSizeAt, reportAt, reportSize}
)

// read returns a copy of the array's bytes in the structure b.
func (a array) read(b []byte) ([]byte, error) {
	if len(b) != a.size {
		return nil, fmt.Errorf("%s: structure of %d bytes, want %d", a.fn, len(b), a.size)
	}
	n := binary.NativeEndian.Uint32(b[a.lenAt:])
	switch {
	case n == 0:
		return nil, fmt.Errorf("%s gave no %s", a.fn, a.what)
	case n > uint32(a.max):
		return nil, fmt.Errorf("%s claims a %d-byte %s; it holds %d at most", a.fn, n, a.what, a.max)
	}
	return bytes.Clone(b[a.at : a.at+int(n)]), nil
}

// decodeCertificate returns the attestation certificate chain (PEM) of an
// nvmlConfComputeGpuCertificate_t.
func decodeCertificate(b []byte) ([]byte, error) {
	p, err := certArray.read(b)
	// The driver may count a terminating NUL.
	return bytes.TrimRight(p, "\x00"), err
}

// decodeReport returns the attestation report of an nvmlConfComputeGpuAttestationReport_t,
// which must be GET_MEASUREMENTS evidence (attest/nvidia) whose request carries nonce.
func decodeReport(b []byte, nonce [32]byte) ([]byte, error) {
	report, err := reportArray.read(b)
	if err != nil {
		return nil, err
	}
	ev, err := nvidia.ParseEvidence(report)
	if err != nil {
		return nil, fmt.Errorf("attestation report: %w", err)
	}
	if ev.Request.Nonce != nonce {
		return nil, fmt.Errorf("the attestation report answers nonce %x, not the %x asked for", ev.Request.Nonce, nonce)
	}
	return report, nil
}
