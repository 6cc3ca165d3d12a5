package provision

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/nvidia"
	"github.com/ppml/ppml/ratls"
	"github.com/ppml/ppml/store"
)

// GPUPolicy is a workload's [workload.gpus]: the GPUs its TEE must have attached, each proving
// with its own evidence, bound to the RA-TLS key, that it is genuine (or simulated, where the
// workload allows simulated evidence), in confidential-computing mode and running the driver
// and VBIOS whose RIMs the owner keeps.
type GPUPolicy struct {
	Count     int    `toml:"count"`      // at least this many GPUs (1 or more)
	Arch      string `toml:"arch"`       // "Hopper" or "Blackwell"; "" for either
	MinDriver string `toml:"min_driver"` // the oldest driver version allowed, e.g. "550.90.07"
	// RIMFolder is a folder of driver and VBIOS RIMs (NVIDIA's SWID tags): every GPU's measurements
	// must match the RIMs of the versions it runs. Required: it is what refuses a GPU whose
	// firmware or mode (devtools, for debugging) differs from production.
	RIMFolder string `toml:"rims"`
	// OCSPFolder is a folder of recorded OCSP responses for the device and RIM chains; "" leaves
	// revocation unchecked.
	OCSPFolder string `toml:"ocsp"`
	AllowHold  bool   `toml:"allow_hold"` // accept certificates on hold (certificateHold)

	rims map[string][]byte // the RIMs of the folder, by the version they are for
}

var gpuArchs = []string{"Hopper", "Blackwell"}

// check validates g and reads its RIM folder; dir is what relative paths are relative to.
func (g *GPUPolicy) check(dir string) error {
	if g.Count < 1 || g.Count > ratls.MaxGPUs {
		return fmt.Errorf("gpus.count %d: want 1 to %d", g.Count, ratls.MaxGPUs)
	}
	if g.Arch != "" && g.Arch != gpuArchs[0] && g.Arch != gpuArchs[1] {
		return fmt.Errorf("gpus.arch %q: want %s", g.Arch, strings.Join(gpuArchs, " or "))
	}
	if g.MinDriver != "" {
		if _, err := parseVersion(g.MinDriver); err != nil {
			return fmt.Errorf("gpus.min_driver: %w", err)
		}
	}
	if g.RIMFolder == "" {
		return errors.New("gpus.rims is required: the folder of the driver and VBIOS RIM files the GPUs must match")
	}
	g.RIMFolder = resolve(dir, g.RIMFolder)
	if g.OCSPFolder != "" {
		g.OCSPFolder = resolve(dir, g.OCSPFolder)
	}
	entries, err := os.ReadDir(g.RIMFolder)
	if err != nil {
		return fmt.Errorf("gpus.rims: %w", err)
	}
	g.rims = map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		name := filepath.Join(g.RIMFolder, e.Name())
		b, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("gpus.rims: %w", err)
		}
		r, err := nvidia.ParseRIM(b)
		if err != nil {
			return fmt.Errorf("gpus.rims: %s: %w", name, err)
		}
		if _, dup := g.rims[r.Version]; dup {
			return fmt.Errorf("gpus.rims: two RIM files in %s are for version %s", g.RIMFolder, r.Version)
		}
		g.rims[r.Version] = b
	}
	if len(g.rims) == 0 {
		return fmt.Errorf("gpus.rims: %s holds no RIM", g.RIMFolder)
	}
	return nil
}

// parseVersion parses a driver version: numbers separated by dots.
func parseVersion(v string) ([]uint64, error) {
	var parts []uint64
	for _, p := range strings.Split(v, ".") {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("driver version %q: want numbers separated by dots, such as 550.90.07", v)
		}
		parts = append(parts, n)
	}
	return parts, nil
}

// versionBelow reports whether driver version a is older than b.
func versionBelow(a, b []uint64) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

// GPUInput is the GPU evidence of an RA-TLS certificate, with what verifying it needs.
type GPUInput struct {
	Evidence []attest.GPUEvidence
	Nonce    [32]byte        // the key binding every GPU's evidence must answer
	Anchors  []nvidia.Anchor // the GPU roots of trust (trust.Settings.GPUAnchors)
	Time     time.Time
}

// admits verifies the GPUs of in against g, the policy of a workload that allows simulated
// evidence or not, and returns what each GPU's evidence said, for the audit record; the error
// says why they are refused. A nil policy requires no GPU and ignores their evidence.
func (g *GPUPolicy) admits(in *GPUInput, allowSimulated bool) ([]store.GPURecord, error) {
	if g == nil {
		return nil, nil
	}
	have := 0
	if in != nil {
		have = len(in.Evidence)
	}
	if have < g.Count {
		return nil, fmt.Errorf("%d GPUs attested, %d required (gpus.count)", have, g.Count)
	}
	records := make([]store.GPURecord, have)
	var refused []string
	seen := map[string]int{} // the GPU each device key was first seen with
	for i, e := range in.Evidence {
		err := g.admitsGPU(in, e, allowSimulated, &records[i])
		if key := deviceKey(e); err == nil && key != "" {
			// A host could copy one GPU's evidence to count it twice: each GPU signs with its own key.
			if j, dup := seen[key]; dup {
				err = fmt.Errorf("the same GPU as GPU %d (its device key): evidence given twice counts once", j)
			} else {
				seen[key] = i
			}
		}
		if err != nil {
			records[i].Error = err.Error()
			refused = append(refused, fmt.Sprintf("GPU %d: %v", i, err))
		}
	}
	if len(refused) > 0 {
		return records, errors.New(strings.Join(refused, "; "))
	}
	return records, nil
}

// deviceKey returns the public key (PKIX DER) of the leaf certificate of e's chain, the key the
// GPU signs its evidence with; "" if the leaf cannot be read, which verification refuses anyway.
func deviceKey(e attest.GPUEvidence) string {
	if len(e.CertChain) == 0 {
		return ""
	}
	leaf, err := x509.ParseCertificate(e.CertChain[0])
	if err != nil {
		return ""
	}
	return string(leaf.RawSubjectPublicKeyInfo)
}

// admitsGPU verifies one GPU's evidence: its identity and nonce first, then the policy's
// constraints on what it claims, then its measurements against the RIMs of its versions.
func (g *GPUPolicy) admitsGPU(in *GPUInput, e attest.GPUEvidence, allowSimulated bool, rec *store.GPURecord) error {
	opts := nvidia.Options{Time: in.Time, Nonce: in.Nonce[:], AllowHold: g.AllowHold}
	if g.OCSPFolder != "" {
		opts.OCSP = nvidia.OCSPDir(g.OCSPFolder)
	}
	v, platform, err := nvidia.VerifyAnchored(e.Evidence, e.CertChain, in.Anchors, opts)
	if err != nil {
		return err
	}
	op := &v.Evidence.Response.Opaque
	*rec = store.GPURecord{
		Platform: string(platform), Arch: v.Arch, DriverVersion: op.DriverVersion(), VBIOSVersion: op.VBIOSVersion(),
		FWID: attest.Hex(v.FWID).String(), Measurements: v.Measurements, Revocation: v.Revocation,
	}
	if platform == attest.Simulated && !allowSimulated {
		return errors.New("a simulated GPU is not allowed (allow_simulated = false)")
	}
	if g.Arch != "" && v.Arch != g.Arch {
		return fmt.Errorf("architecture %q is not %s (gpus.arch)", v.Arch, g.Arch)
	}
	if g.MinDriver != "" {
		have, err := parseVersion(op.DriverVersion())
		if err != nil {
			return err
		}
		if want, _ := parseVersion(g.MinDriver); versionBelow(have, want) {
			return fmt.Errorf("driver %s is older than %s (gpus.min_driver)", op.DriverVersion(), g.MinDriver)
		}
	}
	opts.RequireRIMs = true
	for _, version := range []string{strings.ToLower(op.DriverVersion()), op.VBIOSVersion()} {
		if r, ok := g.rims[version]; ok {
			opts.RIMs = append(opts.RIMs, r)
		} else {
			return fmt.Errorf("gpus.rims %s has no RIM for version %s", g.RIMFolder, version)
		}
	}
	v, _, err = nvidia.VerifyAnchored(e.Evidence, e.CertChain, in.Anchors, opts)
	if v != nil {
		rec.Measurements, rec.Mismatched = v.Measurements, v.Mismatched
	}
	return err
}

// AdmitWithGPUs returns the first workload that admits the claims of the CPU evidence, its
// RTMR3 event log (nil: none came with it; rtmr3.go) and, if it requires GPUs, the GPUs of
// gpus (nil: none attested), together with what each GPU's evidence said; or an error giving
// every workload's reason for refusing them, together with the GPUs' records of the first
// workload that admitted the CPU.
func (p Policy) AdmitWithGPUs(c *attest.Claims, gpus *GPUInput, log *RTMR3Log) (*Workload, []store.GPURecord, error) {
	var reasons []string
	var first []store.GPURecord
	cpuAdmitted := false
	for i := range p {
		err := p[i].admits(c)
		if err == nil {
			err = p[i].admitsRTMR3(c, log)
		}
		if err == nil {
			var records []store.GPURecord
			records, err = p[i].GPU.admits(gpus, p[i].AllowSimulated)
			if err == nil {
				return &p[i], records, nil
			}
			if !cpuAdmitted {
				first, cpuAdmitted = records, true
			}
		}
		reasons = append(reasons, fmt.Sprintf("%s: %v", p[i].Name, err))
	}
	if len(reasons) == 0 {
		return nil, nil, errors.New("no workload is configured")
	}
	return nil, first, fmt.Errorf("no workload admits it (%s)", strings.Join(reasons, "; "))
}

// gpuInput returns the GPU evidence of the RA-TLS certificate of a client that VerifyPeer
// admitted, or nil when it has none.
func gpuInput(cs tls.ConnectionState, anchors []nvidia.Anchor, at time.Time) (*GPUInput, error) {
	evidence, nonce, err := ratls.GPUEvidence(cs.PeerCertificates[0])
	if err != nil || evidence == nil {
		return nil, err
	}
	return &GPUInput{Evidence: evidence, Nonce: nonce, Anchors: anchors, Time: at}, nil
}
