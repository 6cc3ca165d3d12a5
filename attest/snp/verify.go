package snp

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/validate"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/ppml/ppml/attest"
)

// Options configure a [Verifier].
type Options struct {
	// Certificates are VCEK and VLEK certificates (DER or PEM), as AMD's Key Distribution Service
	// serves them, for evidence that carries none. A report takes the one of its chip (the VCEK's
	// HWID is the report's CHIP_ID; VLEKs are not per chip) at its REPORTED_TCB.
	Certificates [][]byte
	// Roots are the trusted AMD roots by product line ("Milan", "Genoa", "Turin"). Nil means
	// AMD's ARK, ASK and ASVK certificates as go-sev-guest embeds them (see [Roots]).
	Roots map[string][]*trust.AMDRootCerts
	// Product constrains the CPU product of version 2 reports, which do not name it. Nil: the
	// product that the VCEK or VLEK certificate names.
	Product *spb.SevProduct
	// CRLs are AMD's certificate revocation lists (DER, as AMD's KDS serves them, or PEM), by a
	// name for messages (their file's), each signed by the ARK of a product line in Roots. A report is refused if its ASK or ASVK is
	// revoked, if a CRL of its product line is not current at the verification time, or if its
	// product line has none, unless SkipCRL.
	CRLs map[string][]byte
	// SkipCRL accepts reports of product lines without a CRL: their claims say the revocation
	// is unchecked.
	SkipCRL bool
}

// Verifier verifies SEV-SNP evidence. It implements [attest.Verifier] and is safe for concurrent
// use.
type Verifier struct {
	roots   map[string][]*trust.AMDRootCerts
	product *spb.SevProduct
	certs   []endorsement
	crls    []revocationList
	skipCRL bool
}

var _ attest.Verifier = (*Verifier)(nil)

// endorsement is a configured VCEK or VLEK certificate.
type endorsement struct {
	der []byte
	key abi.ReportSigner
	ext *kds.Extensions
}

// NewVerifier parses the certificates of opts and returns a Verifier.
func NewVerifier(opts Options) (*Verifier, error) {
	v := &Verifier{roots: opts.Roots, product: opts.Product, skipCRL: opts.SkipCRL}
	var err error
	if v.roots == nil {
		if v.roots, err = amdRoots(); err != nil {
			return nil, fmt.Errorf("embedded AMD roots: %w", err)
		}
	}
	if v.crls, err = parseCRLs(opts.CRLs, v.roots); err != nil {
		return nil, err
	}
	for i, b := range opts.Certificates {
		c, err := trust.ParseCert(b)
		if err != nil {
			return nil, fmt.Errorf("SEV-SNP certificate %d: %w", i, err)
		}
		e := endorsement{der: c.Raw, key: abi.VcekReportSigner}
		if e.ext, err = kds.VcekCertificateExtensions(c); err != nil {
			e.key = abi.VlekReportSigner
			if e.ext, err = kds.VlekCertificateExtensions(c); err != nil {
				return nil, fmt.Errorf("SEV-SNP certificate %d (%q) is neither a VCEK nor a VLEK: %w", i, c.Subject.CommonName, err)
			}
		}
		v.certs = append(v.certs, e)
	}
	return v, nil
}

// Roots returns the AMD roots of trust of one product line from its KDS certificate chains: the
// PEM ASK and ARK served at https://kdsintf.amd.com/vcek/v1/{productLine}/cert_chain, and the ASVK
// and ARK of .../vlek/v1/{productLine}/cert_chain for VLEK-signed reports.
func Roots(productLine string, kdsChains ...[]byte) (*trust.AMDRootCerts, error) {
	r := trust.AMDRootCertsProduct(productLine)
	r.ProductCerts = new(trust.ProductCerts)
	for _, c := range kdsChains {
		// Blank lines after the ARK (as in go-sev-guest's own Turin VLEK chain) are harmless.
		if err := r.ProductCerts.FromKDSCertBytes(bytes.TrimSpace(c)); err != nil {
			return nil, fmt.Errorf("%s certificate chain: %w", productLine, err)
		}
		if r.ProductCerts.Ark == nil {
			return nil, fmt.Errorf("%s certificate chain: the ARK does not parse", productLine)
		}
	}
	return r, nil
}

// amdRoots returns the roots that go-sev-guest embeds, VCEK and VLEK chains together.
func amdRoots() (map[string][]*trust.AMDRootCerts, error) {
	roots := make(map[string][]*trust.AMDRootCerts)
	for line, chains := range map[string][2][]byte{
		"Milan": {trust.AskArkMilanVcekBytes, trust.AskArkMilanVlekBytes},
		"Genoa": {trust.AskArkGenoaVcekBytes, trust.AskArkGenoaVlekBytes},
		"Turin": {trust.AskArkTurinVcekBytes, trust.AskArkTurinVlekBytes},
	} {
		r, err := Roots(line, chains[:]...)
		if err != nil {
			return nil, err
		}
		roots[line] = []*trust.AMDRootCerts{r}
	}
	return roots, nil
}

// Kind returns attest.SNP.
func (v *Verifier) Kind() attest.Kind { return attest.SNP }

// Verify verifies SEV-SNP evidence as of time at and returns its claims. Every error names the
// step that failed: parsing, finding the endorsement certificate, go-sev-guest's verification of
// the certificate chain and signature, the report's consistency with its certificate, or
// revocation (AMD's CRLs).
func (v *Verifier) Verify(_ context.Context, evidence []byte, at time.Time) (*attest.Claims, error) {
	if at.IsZero() {
		return nil, errors.New("no verification time given")
	}
	att, err := parseEvidence(evidence)
	if err != nil {
		return nil, fmt.Errorf("parse SEV-SNP evidence: %w", err)
	}
	r := att.Report
	info, err := abi.ParseSignerInfo(r.GetSignerInfo())
	if err != nil {
		return nil, fmt.Errorf("parse SEV-SNP evidence: %w", err)
	}
	slot := endorsementSlot(att.CertificateChain, info.SigningKey)
	if slot == nil {
		return nil, fmt.Errorf("the SEV-SNP report is signed by %v, not by a VCEK or VLEK", info.SigningKey)
	}
	candidates := [][]byte{*slot}
	if len(*slot) == 0 {
		candidates = v.endorsements(r, info.SigningKey)
	}
	if len(candidates) == 0 {
		return nil, fmt.Errorf("no %v certificate for chip %x at TCB %#x: the evidence carries none and none was configured",
			info.SigningKey, r.GetChipId(), r.GetReportedTcb())
	}
	opts := &verify.Options{DisableCertFetching: true, Now: at, TrustedRoots: v.roots, Product: v.product}
	for _, c := range candidates {
		*slot = c
		if err = verify.SnpAttestation(att, opts); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("verify SEV-SNP report with go-sev-guest: %w", err)
	}
	cert, err := x509.ParseCertificate(*slot)
	if err != nil {
		return nil, fmt.Errorf("verify SEV-SNP report: %v certificate: %w", info.SigningKey, err)
	}
	ext, err := kds.CertificateExtensions(cert, info.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("verify SEV-SNP report: %v certificate: %w", info.SigningKey, err)
	}
	c, err := snpClaims(r, info.SigningKey, ext)
	if err != nil {
		return nil, err
	}
	if err := checkReport(r, info.SigningKey, ext, c); err != nil {
		return nil, fmt.Errorf("check SEV-SNP report against its %v certificate: %w", info.SigningKey, err)
	}
	if c.Revocation, err = v.checkRevocation(c.ProductLine, info.SigningKey, cert, at); err != nil {
		return nil, fmt.Errorf("check SEV-SNP revocation: %w", err)
	}
	// go-sev-guest's own consistency checks: CHIP_ID is the VCEK's HWID, the committed TCB and
	// firmware are at most the current ones. The guest policy is for the relying party's policy
	// to judge: allow every capability here.
	anyPolicy := abi.SnpPolicy{SMT: true, MigrateMA: true, Debug: true, CXLAllowed: true}
	if err := validate.SnpAttestation(att, &validate.Options{GuestPolicy: anyPolicy, PermitProvisionalFirmware: true}); err != nil {
		return nil, fmt.Errorf("check SEV-SNP report against its %v certificate: %w", info.SigningKey, err)
	}
	status, reasons := tcbStatus(r, c)
	c.StatusReasons = reasons
	return &attest.Claims{
		TEE:         attest.SNP,
		Platform:    attest.AMD,
		Measurement: r.GetMeasurement(),
		SNP:         c,
		Debug:       c.Policy.Debug,
		TCBStatus:   status,
		AdvisoryIDs: []string{},
		ReportData:  r.GetReportData(),
	}, nil
}

// checkReport checks what go-sev-guest does not, or not in words that say what is wrong: that
// the report's key is the one of its REPORTED_TCB, which is at most its CURRENT_TCB, and that its
// VMPL is one of the four.
func checkReport(r *spb.Report, key abi.ReportSigner, ext *kds.Extensions, c *attest.SNPClaims) error {
	if uint64(ext.TCBVersion) != r.GetReportedTcb() {
		return fmt.Errorf("REPORTED_TCB (%v) is not the %v's TCB (%v): that %v is not the one of the report's TCB",
			c.ReportedTCB, key, decodeTCB(uint64(ext.TCBVersion), c.ProductLine), key)
	}
	if !kds.TCBPartsLE(kds.DecomposeTCBVersion(kds.TCBVersion(r.GetReportedTcb())), kds.DecomposeTCBVersion(kds.TCBVersion(r.GetCurrentTcb()))) {
		return fmt.Errorf("REPORTED_TCB (%v) is above CURRENT_TCB (%v)", c.ReportedTCB, c.CurrentTCB)
	}
	if c.VMPL > 3 {
		return fmt.Errorf("VMPL %d is not one of 0 to 3", c.VMPL)
	}
	return nil
}

// parseEvidence parses a report and the certificate table after it, if any.
func parseEvidence(b []byte) (*spb.Attestation, error) {
	if len(b) < abi.ReportSize {
		return nil, fmt.Errorf("%d bytes, an attestation report has %d", len(b), abi.ReportSize)
	}
	r, err := abi.ReportToProto(b[:abi.ReportSize])
	if err != nil {
		return nil, err
	}
	att := &spb.Attestation{Report: r, CertificateChain: &spb.CertificateChain{}}
	if len(b) > abi.ReportSize {
		table := new(abi.CertTable)
		if err := table.Unmarshal(b[abi.ReportSize:]); err != nil {
			return nil, fmt.Errorf("certificate table: %w", err)
		}
		// Proto logs a warning where the table has neither a VCEK nor a VLEK, on stdout once
		// go-tdx-guest has set up the shared logger; the configured certificates serve then.
		_, vcekErr := table.GetByGUIDString(abi.VcekGUID)
		_, vlekErr := table.GetByGUIDString(abi.VlekGUID)
		if vcekErr == nil || vlekErr == nil {
			att.CertificateChain = table.Proto()
		}
	}
	return att, nil
}

// endorsementSlot returns the field of chain that holds the certificate of key, nil if key is
// neither VCEK nor VLEK.
func endorsementSlot(chain *spb.CertificateChain, key abi.ReportSigner) *[]byte {
	switch key {
	case abi.VcekReportSigner:
		return &chain.VcekCert
	case abi.VlekReportSigner:
		return &chain.VlekCert
	}
	return nil
}

// endorsements returns the configured certificates of key that may have signed r: those at r's
// REPORTED_TCB and, for a VCEK, of r's chip (unless the report masks CHIP_ID).
func (v *Verifier) endorsements(r *spb.Report, key abi.ReportSigner) [][]byte {
	masked := bytes.Equal(r.GetChipId(), make([]byte, abi.ChipIDSize))
	var out [][]byte
	for _, e := range v.certs {
		if e.key == key && e.ext.TCBVersion == kds.TCBVersion(r.GetReportedTcb()) &&
			(key == abi.VlekReportSigner || masked || bytes.Equal(e.ext.HWID, r.GetChipId())) {
			out = append(out, e.der)
		}
	}
	return out
}
