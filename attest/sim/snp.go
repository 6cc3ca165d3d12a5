package sim

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify/trust"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/snp"
)

// Files of an SEV-SNP platform's folder, besides platform.json.
const (
	arkCertFile  = "ark.pem"
	arkKeyFile   = "ark.key"
	askCertFile  = "ask.pem"
	askKeyFile   = "ask.key"
	vcekCertFile = "vcek.pem"
	vcekKeyFile  = "vcek.key"
)

// The simulated SEV-SNP platform: an AMD Milan B1 CPU, whose firmware is at one TCB.
const (
	snpProductLine = "Milan"
	snpStepping    = 1
	snpReport      = 3 // report version: 3 names the CPU (CPUID family, model, stepping)
	// snpPolicy is the guest policy: bit 17 (reserved, must be 1) and SMT allowed, as a
	// typical guest's.
	snpPolicy = 1<<17 | 1<<16
	// snpFirmware is the SEV firmware's major, minor and build.
	snpMajor, snpMinor, snpBuild = 1, 55, 21
)

// snpTCB is the platform's TCB: bootloader, TEE, SNP firmware and microcode security patch levels.
var snpTCB = kds.TCBParts{BlSpl: 4, TeeSpl: 0, SnpSpl: 22, UcodeSpl: 213}

// DefaultSNPMeasurement is the launch measurement of a simulated SEV-SNP guest whose platform
// was made without one.
var DefaultSNPMeasurement = sha512.Sum384([]byte("ppml simulated SEV-SNP guest image"))

// SNPOptions describe the guest of a new SEV-SNP platform.
type SNPOptions struct {
	Measurement [48]byte // the launch measurement; zero means DefaultSNPMeasurement
	HostData    [32]byte // what the host gave at launch (zero: nothing)
}

// SNPSettings describe an SEV-SNP platform and its guest.
type SNPSettings struct {
	TEE         attest.Kind `json:"tee"` // attest.SNP
	Measurement attest.Hex  `json:"measurement"`
	HostData    attest.Hex  `json:"hostdata"`
	ChipID      attest.Hex  `json:"chip_id"`
	Created     time.Time   `json:"created"`
}

// SNPPlatform is a simulated SEV-SNP platform: an AMD root key (ARK) and signing key (ASK), RSA
// with RSA-PSS signatures as AMD's, and the chip's VCEK, ECDSA P-384 with the TCB extensions
// AMD's Key Distribution Service puts in VCEKs, which signs the guest's attestation reports.
type SNPPlatform struct {
	Dir      string
	Settings SNPSettings

	ark, ask, vcek *x509.Certificate
	arkKey, askKey *rsa.PrivateKey
	vcekKey        *ecdsa.PrivateKey
}

// amdName is the subject of an AMD certificate, as AMD's KDS writes them.
func amdName(cn string) pkix.Name {
	return pkix.Name{
		CommonName: cn, Country: []string{"US"}, Locality: []string{"Santa Clara"}, Province: []string{"CA"},
		Organization: []string{"Advanced Micro Devices"}, OrganizationalUnit: []string{"Engineering"},
	}
}

// InitSNP creates a new SEV-SNP platform in dir, which must not exist, running the guest that
// opts describe. Its ARK and ASK are RSA-4096: making them takes a few seconds.
func InitSNP(dir string, opts SNPOptions, now time.Time) (*SNPPlatform, error) {
	if opts.Measurement == [48]byte{} {
		opts.Measurement = DefaultSNPMeasurement
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	p := &SNPPlatform{Dir: dir, Settings: SNPSettings{
		TEE: attest.SNP, Measurement: opts.Measurement[:], HostData: opts.HostData[:],
		ChipID: make(attest.Hex, abi.ChipIDSize), Created: now.UTC().Truncate(time.Second),
	}}
	rand.Read(p.Settings.ChipID)
	if err := p.issue(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// issue makes the platform's keys and certificates and writes them and its settings.
func (p *SNPPlatform) issue() error {
	var err error
	for _, k := range []**rsa.PrivateKey{&p.arkKey, &p.askKey} {
		if *k, err = rsa.GenerateKey(rand.Reader, 4096); err != nil {
			return err
		}
	}
	if p.vcekKey, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		return err
	}
	now := p.Settings.Created
	ca := func(cn, role string) *x509.Certificate {
		return &x509.Certificate{
			Subject: amdName(cn), IsCA: true, BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			CRLDistributionPoints: []string{kds.CrlLinkByRole(snpProductLine, role)},
			SignatureAlgorithm:    x509.SHA384WithRSAPSS,
		}
	}
	vcekExt, err := vcekExtensions(p.Settings.ChipID)
	if err != nil {
		return err
	}
	// A VCEK has the KDS extensions and no other (go-sev-guest refuses any other but the
	// authority key identifier).
	vcek := &x509.Certificate{Subject: amdName("SEV-VCEK"), ExtraExtensions: vcekExt, SignatureAlgorithm: x509.SHA384WithRSAPSS}
	var errs []error
	issue := func(tmpl, parent *x509.Certificate, pub any, parentKey crypto.Signer) *x509.Certificate {
		c, err := issueCert(tmpl, parent, pub, parentKey, now)
		errs = append(errs, err)
		return c
	}
	p.ark = issue(ca("ARK-"+snpProductLine, "ARK"), nil, &p.arkKey.PublicKey, p.arkKey)
	p.ask = issue(ca("SEV-"+snpProductLine, "ASK"), p.ark, &p.askKey.PublicKey, p.arkKey)
	p.vcek = issue(vcek, p.ask, &p.vcekKey.PublicKey, p.askKey)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for name, c := range map[string]*x509.Certificate{arkCertFile: p.ark, askCertFile: p.ask, vcekCertFile: p.vcek} {
		errs = append(errs, writePEM(filepath.Join(p.Dir, name), "CERTIFICATE", c.Raw))
	}
	for name, k := range map[string]crypto.Signer{arkKeyFile: p.arkKey, askKeyFile: p.askKey, vcekKeyFile: p.vcekKey} {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		errs = append(errs, err, writePEM(filepath.Join(p.Dir, name), "PRIVATE KEY", der))
	}
	settings, _ := json.MarshalIndent(p.Settings, "", "  ")
	errs = append(errs, os.WriteFile(filepath.Join(p.Dir, platformFile), append(settings, '\n'), 0o600))
	return errors.Join(errs...)
}

// vcekExtensions are the extensions of AMD's KDS in a VCEK: structure version, product name,
// the security patch levels of the TCB (1.3.6.1.4.1.3704.1.3.x) and the chip's HWID.
func vcekExtensions(chipID []byte) ([]pkix.Extension, error) {
	var exts []pkix.Extension
	add := func(oid asn1.ObjectIdentifier, v any, params string) error {
		b, err := asn1.MarshalWithParams(v, params)
		exts = append(exts, pkix.Extension{Id: oid, Value: b})
		return err
	}
	err := errors.Join(
		add(kds.OidStructVersion, 1, ""),
		add(kds.OidProductName1, fmt.Sprintf("%s-B%d", snpProductLine, snpStepping), "ia5"),
		add(kds.OidBlSpl, int(snpTCB.BlSpl), ""),
		add(kds.OidTeeSpl, int(snpTCB.TeeSpl), ""),
		add(kds.OidSnpSpl, int(snpTCB.SnpSpl), ""),
		add(kds.OidSpl4, 0, ""), add(kds.OidSpl5, 0, ""), add(kds.OidSpl6, 0, ""), add(kds.OidSpl7, 0, ""),
		add(kds.OidUcodeSpl, int(snpTCB.UcodeSpl), ""),
	)
	// The HWID is the raw 64 bytes, without an OCTET STRING header, as AMD's KDS writes it.
	return append(exts, pkix.Extension{Id: kds.OidHwid, Value: chipID}), err
}

// LoadSNP reads the SEV-SNP platform in dir.
func LoadSNP(dir string) (*SNPPlatform, error) {
	p := &SNPPlatform{Dir: dir}
	fail := func(err error) (*SNPPlatform, error) {
		return nil, fmt.Errorf("simulated platform %s: %w", dir, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, platformFile))
	if err != nil {
		return fail(fmt.Errorf("%w (make one with ppml sim init --tee snp)", err))
	}
	if err := json.Unmarshal(b, &p.Settings); err != nil {
		return fail(fmt.Errorf("%s: %w", platformFile, err))
	}
	if p.Settings.TEE != attest.SNP {
		return fail(fmt.Errorf("it is a platform of %s evidence, not of SEV-SNP reports (make one with ppml sim init --tee snp)", cmp.Or(p.Settings.TEE, attest.SGX)))
	}
	if len(p.Settings.Measurement) != 48 || len(p.Settings.HostData) != 32 || len(p.Settings.ChipID) != abi.ChipIDSize {
		return fail(fmt.Errorf("%s: measurement, hostdata or chip_id of the wrong size", platformFile))
	}
	var errs []error
	for name, c := range map[string]**x509.Certificate{arkCertFile: &p.ark, askCertFile: &p.ask, vcekCertFile: &p.vcek} {
		var err error
		*c, err = readCert(filepath.Join(dir, name))
		errs = append(errs, err)
	}
	key, err := readKey(filepath.Join(dir, vcekKeyFile))
	p.vcekKey = key
	if err := errors.Join(append(errs, err)...); err != nil {
		return fail(err)
	}
	return p, nil
}

// Report writes the guest's evidence binding reportData: an attestation report (version 3) with
// the launch measurement, HOSTDATA and reportData, signed by the VCEK over bytes 0 to 0x29F
// (ECDSA P-384 with SHA-384, r and s little-endian in the signature field), followed by the
// certificate table that carries the VCEK, as a host serves them with the report.
func (p *SNPPlatform) Report(reportData [64]byte) ([]byte, error) {
	tcb, err := kds.ComposeTCBParts(snpTCB)
	if err != nil {
		return nil, err
	}
	r := &spb.Report{
		Version: snpReport, GuestSvn: 1, Policy: snpPolicy,
		FamilyId: make([]byte, 16), ImageId: make([]byte, 16),
		SignatureAlgo: uint32(abi.SignEcdsaP384Sha384),
		CurrentTcb:    uint64(tcb), ReportedTcb: uint64(tcb), CommittedTcb: uint64(tcb), LaunchTcb: uint64(tcb),
		ReportData: reportData[:], Measurement: p.Settings.Measurement, HostData: p.Settings.HostData,
		IdKeyDigest: make([]byte, 48), AuthorKeyDigest: make([]byte, 48),
		ReportId: make([]byte, 32), ReportIdMa: make([]byte, 32), ChipId: p.Settings.ChipID,
		CurrentBuild: snpBuild, CurrentMinor: snpMinor, CurrentMajor: snpMajor,
		CommittedBuild: snpBuild, CommittedMinor: snpMinor, CommittedMajor: snpMajor,
		Cpuid1EaxFms: abi.MaskedCpuid1EaxFromSevProduct(&spb.SevProduct{
			Name: spb.SevProduct_SEV_PRODUCT_MILAN, MachineStepping: wrapperspb.UInt32(snpStepping),
		}),
		Signature: make([]byte, abi.SignatureSize),
	}
	b, err := abi.ReportToAbiBytes(r)
	if err != nil {
		return nil, err
	}
	digest := sha512.Sum384(abi.SignedComponent(b))
	rr, ss, err := ecdsa.Sign(rand.Reader, p.vcekKey, digest[:])
	if err != nil {
		return nil, err
	}
	sig := b[len(abi.SignedComponent(b)):]
	littleEndian(sig[:72], rr)
	littleEndian(sig[72:144], ss)
	table := abi.CertsFromProto(&spb.CertificateChain{VcekCert: p.vcek.Raw})
	return append(b, table.Marshal()...), nil
}

// littleEndian writes n into b, least significant byte first, as AMD's signatures hold r and s.
func littleEndian(b []byte, n *big.Int) {
	n.FillBytes(b)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
}

// Attester returns the platform's guest as an attester: its evidence is Report's.
// TCB returns the platform's TCB, which its reports give as REPORTED_TCB and LAUNCH_TCB.
func (p *SNPPlatform) TCB() attest.SNPTCB {
	return attest.SNPTCB{Bootloader: snpTCB.BlSpl, TEE: snpTCB.TeeSpl, SNP: snpTCB.SnpSpl, Microcode: snpTCB.UcodeSpl}
}

func (p *SNPPlatform) Attester() attest.Attester { return quoter{attest.SNP, p.Report} }

// snpVerifier is an attest.Verifier of the reports of one simulated SEV-SNP platform: the
// verifier of genuine reports (go-sev-guest), trusting the platform's ARK and ASK only.
type snpVerifier struct {
	v   *snp.Verifier
	ask *x509.Certificate
}

// loadSNPVerifier returns the verifier of the SEV-SNP platform in dir. It reads the platform's
// settings and its ARK and ASK certificates, none of its keys.
func loadSNPVerifier(dir string) (attest.Verifier, error) {
	fail := func(err error) (attest.Verifier, error) {
		return nil, fmt.Errorf("simulated platform %s: %w", dir, err)
	}
	var chain []byte
	for _, name := range []string{askCertFile, arkCertFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return fail(err)
		}
		chain = append(chain, b...)
	}
	ask, err := readCert(filepath.Join(dir, askCertFile))
	if err != nil {
		return fail(err)
	}
	roots, err := snp.Roots(snpProductLine, chain)
	if err != nil {
		return fail(err)
	}
	// The simulated AMD publishes no CRL: its reports' revocation is unchecked.
	v, err := snp.NewVerifier(snp.Options{Roots: map[string][]*trust.AMDRootCerts{snpProductLine: {roots}}, SkipCRL: true})
	if err != nil {
		return fail(err)
	}
	return snpVerifier{v, ask}, nil
}

// Kind returns attest.SNP.
func (snpVerifier) Kind() attest.Kind { return attest.SNP }

// Verify verifies evidence of the platform at time at and returns its claims. Evidence whose
// VCEK the platform's ASK did not sign is refused with attest.ErrUntrustedRoot, so that the
// verifiers of other platforms may try it.
func (s snpVerifier) Verify(ctx context.Context, evidence []byte, at time.Time) (*attest.Claims, error) {
	if len(evidence) < abi.ReportSize {
		return nil, fmt.Errorf("parse SEV-SNP evidence: %d bytes, an attestation report has %d", len(evidence), abi.ReportSize)
	}
	table := new(abi.CertTable)
	var vcek *x509.Certificate
	if table.Unmarshal(evidence[abi.ReportSize:]) == nil {
		if der, err := table.GetByGUIDString(abi.VcekGUID); err == nil {
			vcek, _ = x509.ParseCertificate(der)
		}
	}
	if vcek == nil || vcek.CheckSignatureFrom(s.ask) != nil {
		return nil, fmt.Errorf("SEV-SNP evidence: %w (its VCEK is not the simulated platform's)", attest.ErrUntrustedRoot)
	}
	c, err := s.v.Verify(ctx, evidence, at)
	if err != nil {
		return nil, err
	}
	c.Platform = attest.Simulated
	return c, nil
}
