package sgx

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ppml/ppml/collateral"
)

//go:embed intel_sgx_root_ca.pem
var intelRootCAPEM []byte

// IntelRoots returns a new pool holding the Intel SGX Root CA certificate (CN=Intel SGX Root CA,
// SHA-256 fingerprint 44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3), the
// trust anchor of every genuine SGX quote.
func IntelRoots() *x509.CertPool {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(intelRootCAPEM) {
		panic("sgx: embedded Intel SGX Root CA does not parse")
	}
	return p
}

// Options configure [Verify].
type Options struct {
	// Time is the verification time; required. Certificates, collateral and CRLs must be valid
	// then.
	Time time.Time
	// Roots are the trusted root CAs; nil means the Intel SGX Root CA ([IntelRoots]).
	Roots *x509.CertPool
	// Collateral is the Intel collateral for the quote's platform; required.
	Collateral *collateral.Bundle
	// SkipCRL skips revocation checking: the bundle's CRLs are ignored. Without it both the root
	// CA CRL and the PCK CRL must be present and current.
	SkipCRL bool
}

// Verdict is the outcome of a successful verification.
type Verdict struct {
	Quote *Quote
	PCK   *PCKExtension // the SGX extension of the PCK leaf certificate
	FMSPC string        // upper-case hex, as in the TCB info
	// TCBStatus is the final status (one of the Status constants): the platform's status
	// converged with the TDX module's, the TD relaunch advice and the QE's, as Intel's Quote
	// Verification Library does.
	TCBStatus string
	// AdvisoryIDs are the Intel security advisories that apply: the platform level's, then the
	// TDX module level's and the QE level's not among them.
	AdvisoryIDs    []string
	PlatformStatus string // status of the platform's TCB level (for a TD, the level its TDX components match)
	QEStatus       string // status of the Quoting Enclave's ISVSVN
	QEISVSVN       uint16
	// TCBDate is the earliest date of the matched TCB levels (platform, TDX module, QE), as the
	// tcb_level_date_tag of Intel's QVL: the platform is not known to be vulnerable to any
	// advisory published on or after it.
	TCBDate time.Time
	// TCBEvaluationDataNumber is the smaller of the TCB info's and the QE identity's: how recent
	// the collateral's view of the platform is.
	TCBEvaluationDataNumber int
	// Module is the TDX module's identity and level; nil for SGX, and for a TD whose module has
	// no identity of its own (TEE_TCB_SVN[1] = 0), which Intel's QVL treats as UpToDate.
	Module *ModuleVerdict
	// Behind lists what the platform has below the newest TCB level of the collateral.
	Behind []Behind
}

// ModuleVerdict is the TDX module's identity and TCB level.
type ModuleVerdict struct {
	ID          string // "TDX_01", ...
	ISVSVN      uint8  // TEE_TCB_SVN[0]
	Status      string
	TCBDate     time.Time
	AdvisoryIDs []string
}

// Kinds of component that can be behind.
const (
	BehindSGX       = "sgx"        // an SGX TCB component of the PCK certificate: CPU microcode, BIOS
	BehindPCE       = "pce"        // the PCE's SVN
	BehindTDX       = "tdx"        // a TDX TCB component of TEE_TCB_SVN
	BehindTDXModule = "tdx_module" // the TDX module's ISVSVN against its identity
	BehindQE        = "qe"         // the Quoting Enclave's ISVSVN
)

// Behind is one component whose SVN is below the newest TCB level's.
type Behind struct {
	Component string // one of the Behind constants
	Index     int    // the component's index in its list (0 where there is one value)
	Name      string // what it is, as the TCB info names it ("SGX Late Microcode Update", "TDX_01", ...)
	Platform  int    // the platform's SVN
	Level     int    // the newest level's
}

// Debug reports whether the attested enclave or TD is a debug one, whose memory the host can
// read (ATTRIBUTES flag 0x2, TD_ATTRIBUTES bit 0).
func (v *Verdict) Debug() bool {
	if v.Quote.TD != nil {
		return v.Quote.TD.Debug()
	}
	return v.Quote.Body.Debug()
}

// Verify verifies an SGX DCAP quote against opts.Collateral at opts.Time, step by step as Intel's
// Quote Verification Library does. A quote whose signatures, certificate chain and collateral
// check out verifies whatever its TCB status (reported in the Verdict), except Revoked. Every
// failure is an [*Error] naming the step.
//
// Verify parses and checks the collateral on each call; a [Verifier] does that once.
func Verify(quote []byte, opts Options) (*Verdict, error) {
	v, err := NewVerifier(opts)
	if err != nil {
		return nil, err
	}
	return v.Verify(quote, opts.Time)
}

// Verifier verifies quotes against one collateral bundle, which it parses and whose signatures
// and certificate chains it checks once, in [NewVerifier]. It is safe for concurrent use.
//
// It remembers the PCK chains it has verified, and for each the QE report that the PCK key was
// last found to have signed, so that further quotes from a known platform cost one signature
// check: a platform's quotes carry the same QE report until its attestation key changes.
type Verifier struct {
	roots   *x509.CertPool
	skipCRL bool

	tcbInfo  *TCBInfo
	tcbChain []*x509.Certificate // TCB info signer → root
	qeID     *QEIdentity
	qeChain  []*x509.Certificate
	rootCRL  *crl // nil if absent or skipped
	pckCRL   *crl

	mu     sync.Mutex
	chains map[string]*pckEntry // verified PCK chains by PEM
}

// crl is a CRL whose signature has been checked, with its issuer's verified chain.
type crl struct {
	list    *x509.RevocationList
	chain   []*x509.Certificate // issuer → root
	revoked map[string]bool     // serial numbers, decimal
}

// NewVerifier checks the collateral of opts (signatures and issuer chains, each chain verified at
// the time its piece was issued) and returns a Verifier for it. opts.Time is not used: each call
// of [Verifier.Verify] names its own time.
func NewVerifier(opts Options) (*Verifier, error) {
	b := opts.Collateral
	if b == nil {
		return nil, stepErr(StepCollateral, "no collateral")
	}
	v := &Verifier{roots: opts.Roots, skipCRL: opts.SkipCRL, chains: make(map[string]*pckEntry)}
	if v.roots == nil {
		v.roots = IntelRoots()
	}
	var err error
	if v.tcbInfo, err = ParseTCBInfo(b.TCBInfo); err != nil {
		return nil, &Error{Step: StepTCBInfo, Err: err}
	}
	if v.tcbChain, err = v.signerChain(b.TCBInfoIssuerChain, v.tcbInfo.IssueDate, &v.tcbInfo.signed); err != nil {
		return nil, &Error{Step: StepTCBInfo, Err: err}
	}
	if v.qeID, err = ParseQEIdentity(b.QEIdentity); err != nil {
		return nil, &Error{Step: StepQEIdentity, Err: err}
	}
	if v.qeChain, err = v.signerChain(b.QEIdentityIssuerChain, v.qeID.IssueDate, &v.qeID.signed); err != nil {
		return nil, &Error{Step: StepQEIdentity, Err: err}
	}
	if v.skipCRL {
		return v, nil
	}
	if len(b.RootCACRL) > 0 {
		root := v.tcbChain[len(v.tcbChain)-1:]
		if v.rootCRL, err = v.parseCRL(b.RootCACRL, root); err != nil {
			return nil, stepErr(StepRevocation, "root CA CRL: %w", err)
		}
		for _, c := range []*x509.Certificate{v.tcbChain[0], v.qeChain[0]} {
			if err := v.rootCRL.check(c); err != nil {
				return nil, &Error{Step: StepRevocation, Err: err}
			}
		}
	}
	if len(b.PCKCRL) > 0 {
		issuer, err := parseCerts(b.PCKCRLIssuerChain)
		if err == nil {
			v.pckCRL, err = v.parseCRL(b.PCKCRL, issuer)
		}
		if err != nil {
			return nil, stepErr(StepRevocation, "PCK CRL: %w", err)
		}
	}
	return v, nil
}

// signerChain parses a PEM issuer chain, verifies it to the roots at time at, and checks that its
// first certificate signed s. It returns the verified chain, signer first and root last.
func (v *Verifier) signerChain(chainPEM []byte, at time.Time, s *signed) ([]*x509.Certificate, error) {
	chain, err := v.verifyChain(chainPEM, at)
	if err != nil {
		return nil, fmt.Errorf("issuer chain: %w", err)
	}
	return chain, s.verify(chain[0])
}

// verifyChain parses a PEM chain (first certificate the one to verify) and verifies it to the
// roots at time at.
func (v *Verifier) verifyChain(chainPEM []byte, at time.Time) ([]*x509.Certificate, error) {
	certs, err := parseCerts(chainPEM)
	if err != nil {
		return nil, err
	}
	return v.verifyCerts(certs, at)
}

// verifyCerts verifies certs[0] to the roots at time at, with certs[1:] as intermediates.
func (v *Verifier) verifyCerts(certs []*x509.Certificate, at time.Time) ([]*x509.Certificate, error) {
	if err := checkCertTimes(certs, at); err != nil {
		return nil, err
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: inter,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	return chains[0], nil
}

// checkCertTimes reports the first certificate that is not valid at time at.
func checkCertTimes(certs []*x509.Certificate, at time.Time) error {
	for _, c := range certs {
		if err := checkTime(fmt.Sprintf("certificate %q", c.Subject.CommonName), c.NotBefore, c.NotAfter, at, ErrExpired); err != nil {
			return err
		}
	}
	return nil
}

// checkTime checks that from <= at <= until; after until it returns late.
func checkTime(what string, from, until, at time.Time, late error) error {
	const layout = time.RFC3339
	if at.Before(from) {
		return fmt.Errorf("%s %w: valid from %s, time is %s", what, ErrNotYetValid, from.UTC().Format(layout), at.UTC().Format(layout))
	}
	if at.After(until) {
		return fmt.Errorf("%s %w: valid until %s, time is %s", what, late, until.UTC().Format(layout), at.UTC().Format(layout))
	}
	return nil
}

// parseCRL parses a DER CRL and checks it was signed by issuer[0], whose chain (issuer[1:] as
// intermediates) must verify to the roots at the CRL's thisUpdate.
func (v *Verifier) parseCRL(der []byte, issuer []*x509.Certificate) (*crl, error) {
	list, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	c := &crl{list: list, revoked: make(map[string]bool, len(list.RevokedCertificateEntries))}
	if c.chain, err = v.verifyCerts(issuer, list.ThisUpdate); err != nil {
		return nil, fmt.Errorf("issuer chain: %w", err)
	}
	if err := list.CheckSignatureFrom(c.chain[0]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	for _, e := range list.RevokedCertificateEntries {
		c.revoked[e.SerialNumber.String()] = true
	}
	return c, nil
}

// check reports whether cert is revoked by c.
func (c *crl) check(cert *x509.Certificate) error {
	if c.revoked[cert.SerialNumber.String()] {
		return fmt.Errorf("certificate %q serial %x %w by the CRL of %q", cert.Subject.CommonName, cert.SerialNumber, ErrRevoked, c.chain[0].Subject.CommonName)
	}
	return nil
}

// current checks that c is fresh at time at and was issued by issuer (same name and key).
func (c *crl) current(issuer *x509.Certificate, at time.Time) error {
	name := fmt.Sprintf("CRL of %q", c.chain[0].Subject.CommonName)
	if !bytes.Equal(c.chain[0].RawSubject, issuer.RawSubject) || !bytes.Equal(c.chain[0].RawSubjectPublicKeyInfo, issuer.RawSubjectPublicKeyInfo) {
		return fmt.Errorf("%w: the %s is not the CRL of %q", ErrNoRevocationData, name, issuer.Subject.CommonName)
	}
	if err := checkTime(name, c.list.ThisUpdate, c.list.NextUpdate, at, ErrStaleCRL); err != nil {
		return err
	}
	return checkCertTimes(c.chain, at)
}

// Verify verifies a quote at time at; see [Verify].
func (v *Verifier) Verify(quote []byte, at time.Time) (*Verdict, error) {
	if at.IsZero() {
		return nil, errors.New("no verification time given")
	}
	q, err := ParseQuote(quote)
	if err != nil {
		return nil, &Error{Step: StepQuote, Err: err, TEE: teeOf(quote)}
	}
	vd, err := v.verify(q, at)
	if e := (*Error)(nil); errors.As(err, &e) && q.IsTD() {
		e.TEE = "TDX"
	}
	return vd, err
}

// teeOf names the TEE that the header of a quote, parsed or not, names: "TDX" for TEE type
// 0x81, "" (SGX) otherwise.
func teeOf(quote []byte) string {
	if len(quote) >= 8 && binary.LittleEndian.Uint32(quote[4:]) == TEETypeTDX {
		return "TDX"
	}
	return ""
}

// verify runs the steps of Verify on a parsed quote.
func (v *Verifier) verify(q *Quote, at time.Time) (*Verdict, error) {
	e, err := v.pckChain(q, at)
	if err != nil {
		return nil, &Error{Step: StepPCKChain, Err: err}
	}
	pck := e.ext
	for _, s := range []struct {
		step  Step
		check func() error
	}{
		{StepRevocation, func() error { return v.checkRevocation(e.chain, at) }},
		{StepQEReport, func() error { return v.checkQEReport(q, e) }},
		{StepQuoteSignature, func() error { return checkQuoteSignature(q) }},
	} {
		if err := s.check(); err != nil {
			return nil, &Error{Step: s.step, Err: err}
		}
	}
	qe, err := v.checkQEIdentity(q, at)
	if err != nil {
		return nil, err
	}
	if err := v.checkTCBInfo(q, &pck, at); err != nil {
		return nil, &Error{Step: StepTCBInfo, Err: err}
	}
	if err := v.checkModuleIdentity(q); err != nil {
		return nil, &Error{Step: StepTDXModule, Err: err}
	}
	vd, err := v.evaluate(q, &pck, qe)
	if err != nil {
		return nil, err
	}
	if q.TD == nil {
		if err := checkAttributes(&q.Body); err != nil {
			return nil, &Error{Step: StepAttributes, Err: err}
		}
	}
	return vd, nil
}

// maxCachedChains bounds the Verifier's cache of verified PCK chains (one per platform).
const maxCachedChains = 256

// pckEntry is a verified PCK chain (leaf, PCK CA, root) and its leaf's SGX extension.
type pckEntry struct {
	chain []*x509.Certificate
	ext   PCKExtension
	// signedQE is the last QE report and signature (concatenated) that the leaf's key was found
	// to have signed; it is set under Verifier.mu.
	signedQE string
}

// pckChain verifies the quote's PCK chain to the roots at time at and parses the leaf's SGX
// extension. Verified chains are cached by their PEM bytes; a cached chain is reused while all its
// certificates are valid.
func (v *Verifier) pckChain(q *Quote, at time.Time) (*pckEntry, error) {
	v.mu.Lock()
	e := v.chains[string(q.PCKChain)]
	v.mu.Unlock()
	if e == nil {
		certs, err := q.PCKCertificates()
		if err != nil {
			return nil, err
		}
		e = new(pckEntry)
		if e.chain, err = v.verifyCerts(certs, at); err != nil {
			return nil, err
		}
		if len(e.chain) != 3 {
			return nil, fmt.Errorf("%w: chain of %d certificates, want PCK → PCK CA → root", ErrFormat, len(e.chain))
		}
		ext, err := PCKExtensionOf(e.chain[0])
		if err != nil {
			return nil, err
		}
		e.ext = *ext
		v.mu.Lock()
		if len(v.chains) >= maxCachedChains {
			clear(v.chains)
		}
		v.chains[string(q.PCKChain)] = e
		v.mu.Unlock()
	} else if err := checkCertTimes(e.chain, at); err != nil {
		return nil, err
	}
	return e, nil
}

// checkRevocation checks the PCK CA against the root CA CRL and the PCK leaf against the PCK CRL.
func (v *Verifier) checkRevocation(chain []*x509.Certificate, at time.Time) error {
	if v.skipCRL {
		return nil
	}
	for _, c := range []struct {
		crl          *crl
		name         string
		issuer, cert *x509.Certificate
	}{
		{v.rootCRL, "root CA CRL", chain[2], chain[1]},
		{v.pckCRL, "PCK CRL", chain[1], chain[0]},
	} {
		if c.crl == nil {
			return fmt.Errorf("%w: the collateral has no %s", ErrNoRevocationData, c.name)
		}
		if err := c.crl.current(c.issuer, at); err != nil {
			return err
		}
		if err := c.crl.check(c.cert); err != nil {
			return err
		}
	}
	return nil
}

// checkQEReport checks that the PCK leaf of e signed the QE report, unless it is the one last
// found signed, and that the QE report binds the attestation key: REPORTDATA = SHA-256(attestation
// key ‖ QE auth data) ‖ 32 zero bytes.
func (v *Verifier) checkQEReport(q *Quote, e *pckEntry) error {
	v.mu.Lock()
	// Compared in place: Go converts the byte slices without copying them for a comparison.
	n := len(q.qeReport)
	known := len(e.signedQE) == n+len(q.QEReportSignature) && e.signedQE[:n] == string(q.qeReport) && e.signedQE[n:] == string(q.QEReportSignature[:])
	v.mu.Unlock()
	if !known {
		pub, ok := e.chain[0].PublicKey.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			return fmt.Errorf("%w: PCK key is not ECDSA P-256", ErrUnsupported)
		}
		if !verifyRS(pub, q.qeReport, q.QEReportSignature[:]) {
			return fmt.Errorf("%w: QE report signature (PCK key)", ErrSignature)
		}
		v.mu.Lock()
		e.signedQE = string(q.qeReport) + string(q.QEReportSignature[:])
		v.mu.Unlock()
	}
	h := sha256.New()
	h.Write(q.AttestationKey[:])
	h.Write(q.QEAuthData)
	var want [64]byte
	h.Sum(want[:0])
	if q.QEReport.ReportData != want {
		return fmt.Errorf("%w: QE report data is not SHA-256(attestation key ‖ QE auth data)", ErrMismatch)
	}
	return nil
}

// checkQuoteSignature checks the attestation key's signature over header ‖ report body.
func checkQuoteSignature(q *Quote) error {
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append([]byte{4}, q.AttestationKey[:]...))
	if err != nil {
		return fmt.Errorf("%w: attestation key: %v", ErrFormat, err)
	}
	if !verifyRS(pub, q.signed, q.Signature[:]) {
		return fmt.Errorf("%w: quote signature (attestation key)", ErrSignature)
	}
	return nil
}

// checkQEIdentity checks the QE report against the QE identity, which must be the one of the
// quote's TEE ("QE" for SGX, "TD_QE" for TDX), and returns the QE's TCB level.
func (v *Verifier) checkQEIdentity(q *Quote, at time.Time) (*QETCBLevel, error) {
	id, r := v.qeID, &q.QEReport
	want := map[bool]string{false: "QE", true: "TD_QE"}[q.IsTD()]
	if id.ID != want {
		return nil, stepErr(StepQEIdentity, "%w: identity of %q, want %q for %s quote", ErrMismatch, id.ID, want, teeName(q))
	}
	if err := checkTime("QE identity", id.IssueDate, id.NextUpdate, at, ErrExpired); err != nil {
		return nil, &Error{Step: StepQEIdentity, Err: err}
	}
	if err := checkCertTimes(v.qeChain, at); err != nil {
		return nil, stepErr(StepQEIdentity, "issuer chain: %w", err)
	}
	misc := binary.LittleEndian.AppendUint32(nil, r.MiscSelect)
	switch {
	case !maskedEqual(misc, id.MiscSelectMask[:], id.MiscSelect[:]):
		return nil, stepErr(StepQEIdentity, "%w: QE MISCSELECT %x under mask %x, want %x", ErrMismatch, misc, id.MiscSelectMask, id.MiscSelect)
	case !maskedEqual(r.Attributes[:], id.AttributesMask[:], id.Attributes[:]):
		return nil, stepErr(StepQEIdentity, "%w: QE ATTRIBUTES %x under mask %x, want %x", ErrMismatch, r.Attributes, id.AttributesMask, id.Attributes)
	case r.MRSigner != id.MRSigner:
		return nil, stepErr(StepQEIdentity, "%w: QE MRSIGNER %s, want %s", ErrMismatch, hex.EncodeToString(r.MRSigner[:]), hex.EncodeToString(id.MRSigner[:]))
	case r.ISVProdID != id.ISVProdID:
		return nil, stepErr(StepQEIdentity, "%w: QE ISVPRODID %d, want %d", ErrMismatch, r.ISVProdID, id.ISVProdID)
	}
	if l := isvsvnLevel(id.TCBLevels, r.ISVSVN); l != nil {
		return l, nil
	}
	return nil, stepErr(StepTCBStatus, "%w: QE ISVSVN %d is below every level of the QE identity", ErrTCBLevelNotSupported, r.ISVSVN)
}

// isvsvnLevel returns the first of levels whose ISVSVN is at most svn, or nil.
func isvsvnLevel(levels []QETCBLevel, svn uint16) *QETCBLevel {
	for i := range levels {
		if levels[i].ISVSVN <= svn {
			return &levels[i]
		}
	}
	return nil
}

// teeName names the TEE of a quote's, with its article.
func teeName(q *Quote) string {
	if q.IsTD() {
		return "a TDX"
	}
	return "an SGX"
}

// maskedEqual reports whether v & mask == want, byte by byte.
func maskedEqual(v, mask, want []byte) bool {
	for i := range want {
		if v[i]&mask[i] != want[i] {
			return false
		}
	}
	return true
}

// checkTCBInfo checks that the TCB info is for the quote's TEE (id "TDX", version 3, for a TD;
// "SGX" or version 2 for an enclave), for the PCK certificate's FMSPC and PCE-ID, and current.
func (v *Verifier) checkTCBInfo(q *Quote, pck *PCKExtension, at time.Time) error {
	t := v.tcbInfo
	switch {
	case q.IsTD() && t.ID != "TDX":
		return fmt.Errorf("%w: TCB info of id %q version %d for a TDX quote, want id \"TDX\" version 3", ErrMismatch, t.ID, t.Version)
	case !q.IsTD() && t.ID == "TDX":
		return fmt.Errorf("%w: TDX TCB info for an SGX quote", ErrMismatch)
	case t.FMSPC != pck.FMSPC:
		return fmt.Errorf("%w: TCB info is for FMSPC %X, PCK certificate has %X", ErrMismatch, t.FMSPC, pck.FMSPC)
	case t.PCEID != pck.PCEID:
		return fmt.Errorf("%w: TCB info is for PCE-ID %X, PCK certificate has %X", ErrMismatch, t.PCEID, pck.PCEID)
	}
	if err := checkTime("TCB info", t.IssueDate, t.NextUpdate, at, ErrExpired); err != nil {
		return err
	}
	if err := checkCertTimes(v.tcbChain, at); err != nil {
		return fmt.Errorf("issuer chain: %w", err)
	}
	return nil
}

// checkAttributes checks the attested enclave's ATTRIBUTES as Gramine's RA-TLS verifier does: an
// initialised 64-bit enclave that may not get the provisioning or EINIT token keys. (DEBUG is
// reported, for the policy to judge.)
func checkAttributes(b *ReportBody) error {
	f := b.Flags()
	switch {
	case f&AttrInit == 0:
		return fmt.Errorf("%w: the enclave is not initialised (INIT clear)", ErrMismatch)
	case f&AttrMode64Bit == 0:
		return fmt.Errorf("%w: not a 64-bit enclave (MODE64BIT clear)", ErrMismatch)
	case f&(AttrProvKey|AttrEInitKey) != 0:
		return fmt.Errorf("%w: the enclave may get the provisioning or EINIT token key (flags %#x)", ErrMismatch, f)
	}
	return nil
}
