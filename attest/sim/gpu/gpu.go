// Package gpu adds simulated NVIDIA GPUs to a simulated platform's folder (attest/sim): a
// simulated device PKI (its own root, CA and one leaf a GPU, each leaf carrying the GPU's FWID as
// Hopper's do), a simulated RIM PKI and the driver and VBIOS RIMs of the simulated GPUs (SWID
// tags with enveloped XML signatures, C14N 1.1, ECDSA-SHA384), and an attester that signs SPDM
// 1.1 GET_MEASUREMENTS evidence of the real format for a nonce.
//
// The evidence goes through the very verifier of genuine GPUs (attest/nvidia), and verifies only
// where the simulated roots are injected ([GPUs.Anchor]): the provisioning server does that for
// the platforms it lists in sim_platforms, and admits them only to workloads that allow
// simulated evidence. A simulated GPU protects nothing: it is for development and tests.
package gpu

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/nvidia"
)

// Dir is the subfolder of a simulated platform that holds its GPUs.
const Dir = "gpu"

// RIMDir is the subfolder of Dir that holds the simulated GPUs' RIMs: what a workload's rims
// setting names to compare their measurements.
const RIMDir = "rims"

// CC modes of a simulated GPU, as NVIDIA names them.
const (
	ModeOn       = "on"       // confidential computing on
	ModeDevtools = "devtools" // confidential computing with debugging and profiling tools: not for production
)

// devtoolsIndex is the RIM index (SPDM block devtoolsIndex+1) whose measurement a simulated GPU
// in devtools mode reports differently from its RIM: the simulated VBIOS configuration.
const devtoolsIndex = 5

// blocks is the number of measurement blocks a simulated GPU reports; RIM indices 0-3 are the
// driver's, 4-7 the VBIOS's.
const blocks = 8

// Settings describe the simulated GPUs of a platform.
type Settings struct {
	Count         int          `json:"count"`
	DriverVersion string       `json:"driver_version"` // e.g. "550.90.07"
	VBIOSVersion  string       `json:"vbios_version"`  // e.g. "96.00.9f.00.01"
	Mode          string       `json:"cc_mode"`        // ModeOn or ModeDevtools
	Measurements  []attest.Hex `json:"measurements"`   // the golden values; RIM index i is block i+1
	FirmwareIDs   []attest.Hex `json:"fwids"`          // each GPU's
	Created       time.Time    `json:"created"`
}

// Defaults of Init.
const (
	DefaultDriver = "550.90.07"
	DefaultVBIOS  = "96.00.9f.00.01"
)

// Files of Dir.
const (
	settingsFile = "gpus.json"
	deviceRoot   = "device-root"
	deviceCA     = "device-ca"
	rimRoot      = "rim-root"
	rimCA        = "rim-ca"
	rimSigner    = "rim-signer"
)

// GPUs are the simulated GPUs of a platform, loaded from its folder.
type GPUs struct {
	Dir      string // the platform's GPU folder
	Settings Settings

	deviceRoot, rimRoot *x509.Certificate
	leaves              []*issued // one a GPU
	deviceCA            *issued
}

// issued is a certificate and its key.
type issued struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// Init adds s.Count simulated GPUs to the simulated platform in platformDir, which must have
// none yet, as of now. Empty versions and mode take the defaults (DefaultDriver, DefaultVBIOS,
// ModeOn). On failure it leaves no GPU folder behind.
func Init(platformDir string, s Settings, now time.Time) (*GPUs, error) {
	if s.Count < 1 || s.Count > 16 {
		return nil, fmt.Errorf("%d simulated GPUs: want 1 to 16", s.Count)
	}
	if s.DriverVersion == "" {
		s.DriverVersion = DefaultDriver
	}
	if s.VBIOSVersion == "" {
		s.VBIOSVersion = DefaultVBIOS
	}
	if s.Mode == "" {
		s.Mode = ModeOn
	}
	if s.Mode != ModeOn && s.Mode != ModeDevtools {
		return nil, fmt.Errorf("CC mode %q: want %s or %s", s.Mode, ModeOn, ModeDevtools)
	}
	if _, err := vbiosBytes(s.VBIOSVersion); err != nil {
		return nil, err
	}
	if !validDriver(s.DriverVersion) {
		return nil, fmt.Errorf("driver version %q: want numbers separated by dots, such as %s", s.DriverVersion, DefaultDriver)
	}
	dir := filepath.Join(platformDir, Dir)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("simulated GPUs: %w", err)
	}
	g := &GPUs{Dir: dir}
	s.Created = now.UTC().Truncate(time.Second)
	s.Measurements, s.FirmwareIDs = nil, nil
	for i := 0; i < blocks; i++ {
		s.Measurements = append(s.Measurements, random(48))
	}
	for i := 0; i < s.Count; i++ {
		s.FirmwareIDs = append(s.FirmwareIDs, random(48))
	}
	g.Settings = s
	if err := g.issue(now); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return g, nil
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func validDriver(v string) bool {
	for _, p := range strings.Split(v, ".") {
		if _, err := strconv.ParseUint(p, 10, 32); err != nil {
			return false
		}
	}
	return true
}

// vbiosBytes is the opaque-data form of a VBIOS version "aa.bb.cc.dd.ee": the first four parts
// in reverse order, then the fifth, then three zero bytes (attest/nvidia's Opaque.VBIOSVersion
// reads it back).
func vbiosBytes(v string) ([]byte, error) {
	parts := strings.Split(v, ".")
	b := make([]byte, 8)
	if len(parts) != 5 {
		return nil, fmt.Errorf("VBIOS version %q: want five hex bytes separated by dots, such as %s", v, DefaultVBIOS)
	}
	for i, p := range parts {
		x, err := hex.DecodeString(p)
		if err != nil || len(x) != 1 {
			return nil, fmt.Errorf("VBIOS version %q: want five hex bytes separated by dots, such as %s", v, DefaultVBIOS)
		}
		if i < 4 {
			b[3-i] = x[0]
		} else {
			b[4] = x[0]
		}
	}
	return b, nil
}

// issue makes the PKIs, the GPUs' leaves and the RIMs, and writes them to g.Dir.
func (g *GPUs) issue(now time.Time) error {
	from, to := now.Add(-time.Hour), now.Add(10*365*24*time.Hour)
	droot, err := newCert(nil, "ppml simulated NVIDIA Device Identity CA", true, from, to)
	if err != nil {
		return err
	}
	dca, err := newCert(droot, "ppml simulated GH100 Identity", true, from, to)
	if err != nil {
		return err
	}
	rroot, err := newCert(nil, "ppml simulated NVIDIA CoRIM signing Root CA", true, from, to)
	if err != nil {
		return err
	}
	rca, err := newCert(rroot, "ppml simulated NVIDIA Reference Value CA", true, from, to)
	if err != nil {
		return err
	}
	signer, err := newCert(rca, "ppml simulated NVIDIA RIM signer", false, from, to)
	if err != nil {
		return err
	}
	g.deviceRoot, g.rimRoot, g.deviceCA = droot.cert, rroot.cert, dca
	files := map[string]*issued{deviceRoot: droot, deviceCA: dca, rimRoot: rroot, rimCA: rca, rimSigner: signer}
	for i, fwid := range g.Settings.FirmwareIDs {
		leaf, err := newCert(dca, fmt.Sprintf("GH100 A01 GSP FMC LF simulated %d", i), false, from, to, fwid)
		if err != nil {
			return err
		}
		g.leaves = append(g.leaves, leaf)
		files[fmt.Sprintf("gpu%d", i)] = leaf
	}
	for name, c := range files {
		if err := writeIssued(filepath.Join(g.Dir, name), c); err != nil {
			return err
		}
	}
	if err := os.Mkdir(filepath.Join(g.Dir, RIMDir), 0o755); err != nil {
		return err
	}
	for _, r := range g.rims() {
		signed, err := signRIM(r.xml, signer, rca, rroot)
		if err != nil {
			return fmt.Errorf("sign RIM %s: %w", r.id, err)
		}
		if err := os.WriteFile(filepath.Join(g.Dir, RIMDir, r.id+".swidtag"), signed, 0o644); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(g.Settings, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(g.Dir, settingsFile), append(b, '\n'), 0o644)
}

// newCert issues a certificate with a new P-384 key, signed by parent (nil: self-signed). A
// leaf given a FWID carries it in the 2.23.133.5.4.1 extension in Hopper's composite form.
func newCert(parent *issued, cn string, isCA bool, from, to time.Time, fwid ...[]byte) (*issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn, Organization: []string{"ppml simulated NVIDIA"}},
		NotBefore: from, NotAfter: to, BasicConstraintsValid: true, IsCA: isCA,
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if len(fwid) > 0 {
		ext, err := nvidia.HopperFWIDExtension(&key.PublicKey, fwid[0])
		if err != nil {
			return nil, err
		}
		tmpl.ExtraExtensions = []pkix.Extension{ext}
	}
	issuer, signer := tmpl, key
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &issued{cert: c, key: key}, nil
}

func writeIssued(base string, c *issued) error {
	der, err := x509.MarshalECPrivateKey(c.key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(base+".key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

func readIssued(base string) (*issued, error) {
	cb, err := os.ReadFile(base + ".pem")
	if err != nil {
		return nil, err
	}
	kb, err := os.ReadFile(base + ".key")
	if err != nil {
		return nil, err
	}
	cblock, _ := pem.Decode(cb)
	kblock, _ := pem.Decode(kb)
	if cblock == nil || kblock == nil {
		return nil, fmt.Errorf("%s: not PEM", base)
	}
	c, err := x509.ParseCertificate(cblock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s.pem: %w", base, err)
	}
	k, err := x509.ParseECPrivateKey(kblock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s.key: %w", base, err)
	}
	return &issued{cert: c, key: k}, nil
}

// ErrNoGPUs: the simulated platform has no GPUs.
var ErrNoGPUs = errors.New("the simulated platform has no GPUs (ppml sim init --gpus N)")

// Load loads the simulated GPUs of the platform in platformDir. A platform without GPUs is an
// error wrapping [ErrNoGPUs].
func Load(platformDir string) (*GPUs, error) {
	dir := filepath.Join(platformDir, Dir)
	b, err := os.ReadFile(filepath.Join(dir, settingsFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", platformDir, ErrNoGPUs)
		}
		return nil, err
	}
	g := &GPUs{Dir: dir}
	if err := json.Unmarshal(b, &g.Settings); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, settingsFile), err)
	}
	if len(g.Settings.FirmwareIDs) != g.Settings.Count || len(g.Settings.Measurements) != blocks {
		return nil, fmt.Errorf("%s: %d firmware IDs and %d measurements for %d GPUs", filepath.Join(dir, settingsFile), len(g.Settings.FirmwareIDs), len(g.Settings.Measurements), g.Settings.Count)
	}
	root, err := readIssued(filepath.Join(dir, deviceRoot))
	if err != nil {
		return nil, err
	}
	rroot, err := readIssued(filepath.Join(dir, rimRoot))
	if err != nil {
		return nil, err
	}
	if g.deviceCA, err = readIssued(filepath.Join(dir, deviceCA)); err != nil {
		return nil, err
	}
	g.deviceRoot, g.rimRoot = root.cert, rroot.cert
	for i := 0; i < g.Settings.Count; i++ {
		leaf, err := readIssued(filepath.Join(dir, fmt.Sprintf("gpu%d", i)))
		if err != nil {
			return nil, err
		}
		g.leaves = append(g.leaves, leaf)
	}
	return g, nil
}

// Anchor is the root of trust of the simulated GPUs, for attest/nvidia: their device root and
// RIM root, as the platform [attest.Simulated].
func (g *GPUs) Anchor() nvidia.Anchor {
	d, r := x509.NewCertPool(), x509.NewCertPool()
	d.AddCert(g.deviceRoot)
	r.AddCert(g.rimRoot)
	return nvidia.Anchor{Platform: attest.Simulated, DeviceRoots: d, RIMRoots: r}
}

// AttestGPUs returns the evidence of every simulated GPU for nonce.
func (g *GPUs) AttestGPUs(nonce [32]byte) ([]attest.GPUEvidence, error) {
	out := make([]attest.GPUEvidence, len(g.leaves))
	for i, leaf := range g.leaves {
		ev, err := g.evidence(i, nonce)
		if err != nil {
			return nil, fmt.Errorf("simulated GPU %d: %w", i, err)
		}
		out[i] = attest.GPUEvidence{Evidence: ev, CertChain: [][]byte{leaf.cert.Raw, g.deviceCA.cert.Raw, g.deviceRoot.Raw}}
	}
	return out, nil
}

// evidence writes GPU i's GET_MEASUREMENTS request for nonce and its signed MEASUREMENTS
// response, as a Hopper GPU does.
func (g *GPUs) evidence(i int, nonce [32]byte) ([]byte, error) {
	s := &g.Settings
	b := []byte{0x11, 0xE0, 0x01, 0xFF} // SPDM 1.1 GET_MEASUREMENTS, signed, all blocks
	b = append(b, nonce[:]...)
	b = append(b, 0) // slot 0
	var rec []byte
	for k, v := range s.Measurements {
		v = bytes.Clone(v)
		if k == devtoolsIndex && s.Mode == ModeDevtools {
			v[0] ^= 0xFF
		}
		m := binary.LittleEndian.AppendUint16([]byte{0x80}, uint16(len(v))) // raw bit stream
		rec = append(rec, byte(k+1), 1)                                     // index, DMTF
		rec = binary.LittleEndian.AppendUint16(rec, uint16(len(m)+len(v)))
		rec = append(append(rec, m...), v...)
	}
	b = append(b, 0x11, 0x60, 0, 0, byte(len(s.Measurements)), byte(len(rec)), byte(len(rec)>>8), byte(len(rec)>>16))
	b = append(b, rec...)
	b = append(b, random(32)...) // the responder's nonce
	vbios, err := vbiosBytes(s.VBIOSVersion)
	if err != nil {
		return nil, err
	}
	var op []byte
	for _, f := range []struct {
		t uint16
		v []byte
	}{
		{nvidia.OpaqueDriverVersion, []byte(s.DriverVersion + "\x00")},
		{nvidia.OpaqueVBIOSVersion, vbios},
		{nvidia.OpaqueProject, []byte("1010")},
		{nvidia.OpaqueProjectSKU, []byte("0200")},
		{nvidia.OpaqueChipSKU, []byte("882")},
		{nvidia.OpaqueFWID, s.FirmwareIDs[i]},
	} {
		op = binary.LittleEndian.AppendUint16(op, f.t)
		op = binary.LittleEndian.AppendUint16(op, uint16(len(f.v)))
		op = append(op, f.v...)
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(op)))
	b = append(b, op...)
	sum := sha512.Sum384(b)
	r, sig, err := ecdsa.Sign(rand.Reader, g.leaves[i].key, sum[:])
	if err != nil {
		return nil, err
	}
	b = append(b, r.FillBytes(make([]byte, 48))...)
	return append(b, sig.FillBytes(make([]byte, 48))...), nil
}
