package tdx

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/verify"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sgx"
	"github.com/ppml/ppml/collateral"
)

// Reasons for failure that callers may test with errors.Is. They are the attest/sgx sentinels, so
// one test covers SGX and TDX evidence.
var (
	// ErrTCBLevelNotSupported: the platform's TCB is below every TCB level of the TCB info, or the
	// TDX module matches no level of its identity.
	ErrTCBLevelNotSupported = sgx.ErrTCBLevelNotSupported
	// ErrNoRevocationData: the collateral lacks a CRL and Options.SkipCRL is not set.
	ErrNoRevocationData = sgx.ErrNoRevocationData
	// ErrUnsupported: evidence of a version or type that go-tdx-guest does not verify.
	ErrUnsupported = sgx.ErrUnsupported
)

// ErrTCBNotUpToDate: the platform's or the TDX module's TCB level has a status other than
// UpToDate, which go-tdx-guest refuses.
var ErrTCBNotUpToDate = errors.New("TCB status is not UpToDate")

// Options configure a [Verifier].
type Options struct {
	// Collateral is the Intel collateral for the quotes' platform: the TDX TCB info (PCS
	// /tdx/certification/v4/tcb body), the TD_QE identity, their issuer chains (TCB Signing
	// certificate, root) and the CRLs. Required.
	Collateral *collateral.Bundle
	// Roots are the trusted root CAs; nil means the Intel SGX Root CA ([sgx.IntelRoots]).
	Roots *x509.CertPool
	// SkipCRL skips revocation checking. Without it the bundle must hold the PCK CRL with its
	// issuer chain and the root CA CRL, all current at the verification time.
	SkipCRL bool
}

// Verifier verifies TDX quotes against one collateral bundle. It implements [attest.Verifier] and
// is safe for concurrent use.
type Verifier struct {
	roots   *x509.CertPool
	skipCRL bool
	tcbInfo pcs.TcbInfo
	server  *bundleServer
}

var _ attest.Verifier = (*Verifier)(nil)

// NewVerifier checks that opts hold the collateral go-tdx-guest needs and returns a Verifier for
// it. The collateral's signatures and validity are checked on each [Verifier.Verify], by
// go-tdx-guest.
func NewVerifier(opts Options) (*Verifier, error) {
	b := opts.Collateral
	if b == nil {
		return nil, errors.New("no TDX collateral")
	}
	v := &Verifier{roots: opts.Roots, skipCRL: opts.SkipCRL}
	if v.roots == nil {
		v.roots = sgx.IntelRoots()
	}
	var info pcs.TdxTcbInfo
	if err := json.Unmarshal(b.TCBInfo, &info); err != nil {
		return nil, fmt.Errorf("TDX collateral: TCB info: %w", err)
	}
	v.tcbInfo = info.TcbInfo
	s, err := newBundleServer(b, strings.ToLower(info.TcbInfo.Fmspc), opts.SkipCRL)
	if err != nil {
		return nil, fmt.Errorf("TDX collateral: %w", err)
	}
	v.server = s
	return v, nil
}

// Kind returns attest.TDX.
func (v *Verifier) Kind() attest.Kind { return attest.TDX }

// tcbCheckFailed is how go-tdx-guest's errors say that a TCB level check failed (it returns them
// as text, without a sentinel to test for).
const tcbCheckFailed = "failed TCB status check"

// Verify verifies a TDX quote as of time at and returns its claims. Every error names the step
// that failed: parsing the quote, go-tdx-guest's verification, or the TCB status.
func (v *Verifier) Verify(_ context.Context, evidence []byte, at time.Time) (*attest.Claims, error) {
	if at.IsZero() {
		return nil, errors.New("no verification time given")
	}
	q, err := ParseQuote(evidence)
	if err != nil {
		return nil, fmt.Errorf("parse TDX quote: %w", err)
	}
	opts := &verify.Options{
		CheckRevocations: !v.skipCRL,
		GetCollateral:    true,
		Getter:           v.server,
		Now:              at,
		TrustedRoots:     v.roots,
	}
	err = noPanic(func() error { return verify.TdxQuote(q, opts) })
	if err != nil && !strings.Contains(err.Error(), tcbCheckFailed) {
		return nil, fmt.Errorf("verify TDX quote with go-tdx-guest: %w", err)
	}
	platform, module, tcbErr := v.tcbLevels(q)
	switch {
	case tcbErr != nil:
		return nil, fmt.Errorf("TDX TCB status: %w", tcbErr)
	case err != nil: // a TCB check failed on a level that matches: the QE's, or a status
		return nil, fmt.Errorf("verify TDX quote with go-tdx-guest: %w", err)
	}
	body := q.GetTdQuoteBody()
	c := &attest.Claims{
		TEE:         attest.TDX,
		Platform:    attest.Intel,
		MRTD:        body.GetMrTd(),
		Debug:       body.GetTdAttributes()[0]&1 != 0, // TD_ATTRIBUTES.DEBUG, bit 0
		TCBStatus:   string(platform.TcbStatus),
		AdvisoryIDs: []string{},
		ReportData:  body.GetReportData(),
	}
	for _, r := range body.GetRtmrs() {
		c.RTMRs = append(c.RTMRs, r)
	}
	levels := []*pcs.TcbLevel{platform}
	if module != nil {
		levels = append(levels, module)
	}
	for _, l := range levels {
		for _, id := range l.AdvisoryIDs {
			if !slices.Contains(c.AdvisoryIDs, id) {
				c.AdvisoryIDs = append(c.AdvisoryIDs, id)
			}
		}
	}
	return c, nil
}

// ParseQuote parses a TDX quote, without verifying it, into go-tdx-guest's form: version 4, the
// only one go-tdx-guest reads. A malformed quote is an error, never a panic.
func ParseQuote(b []byte) (*pb.QuoteV4, error) {
	if len(b) >= 2 && binary.LittleEndian.Uint16(b) != 4 {
		return nil, fmt.Errorf("%w quote version %d (go-tdx-guest verifies version 4)", ErrUnsupported, binary.LittleEndian.Uint16(b))
	}
	var q any
	err := noPanic(func() (err error) {
		q, err = abi.QuoteToProto(b)
		return err
	})
	if err != nil {
		return nil, err
	}
	return q.(*pb.QuoteV4), nil
}

// noPanic runs f and turns a panic into an error. go-tdx-guest v0.3.1 panics on some malformed
// quotes (a QE authentication data length past the end, found by FuzzVerify), and evidence comes
// from untrusted peers.
func noPanic(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed quote: go-tdx-guest panicked: %v", r)
		}
	}()
	return f()
}

// tcbLevels returns the TCB level of the quote's platform and, when TEE_TCB_SVN names a TDX module
// major version, the level of the module. A level found with a status other than UpToDate is an
// error wrapping ErrTCBNotUpToDate, since go-tdx-guest refuses it.
//
// The platform's level is the first whose SGX components and PCESVN are at most the PCK
// certificate's and whose TDX components are at most TEE_TCB_SVN, bytes 0 and 1 skipped when byte
// 1 (the module's major version) is not 0: those are graded by the module identity "TDX_%02X"
// (byte 1), whose level is the first with ISVSVN at most byte 0.
func (v *Verifier) tcbLevels(q *pb.QuoteV4) (platform, module *pcs.TcbLevel, err error) {
	ext, err := pckExtensions(q)
	if err != nil {
		return nil, nil, err
	}
	svn := q.GetTdQuoteBody().GetTeeTcbSvn()
	skip := 0
	if svn[1] > 0 {
		skip = 2
	}
	for i := range v.tcbInfo.TcbLevels {
		l := &v.tcbInfo.TcbLevels[i]
		if atLeast(ext.TCB.CPUSvnComponents, l.Tcb.SgxTcbcomponents, 0) && ext.TCB.PCESvn >= l.Tcb.Pcesvn &&
			atLeast(svn, l.Tcb.TdxTcbcomponents, skip) {
			platform = l
			break
		}
	}
	if platform == nil {
		return nil, nil, fmt.Errorf("%w: the platform (PCK SGX components %v, PCESVN %d, TEE_TCB_SVN %x) is below every TCB level of the TCB info for FMSPC %s",
			ErrTCBLevelNotSupported, ext.TCB.CPUSvnComponents, ext.TCB.PCESvn, svn, v.tcbInfo.Fmspc)
	}
	if svn[1] > 0 {
		if module, err = v.moduleLevel(svn); err != nil {
			return nil, nil, err
		}
	}
	for _, l := range []*pcs.TcbLevel{platform, module} {
		if l != nil && l.TcbStatus != pcs.TcbComponentStatusUpToDate {
			return nil, nil, fmt.Errorf("%w: platform TCB level %s, TDX module %s (advisories %v)",
				ErrTCBNotUpToDate, platform.TcbStatus, moduleStatus(module), l.AdvisoryIDs)
		}
	}
	return platform, module, nil
}

// moduleLevel returns the level of the TDX module identity that TEE_TCB_SVN names.
func (v *Verifier) moduleLevel(svn []byte) (*pcs.TcbLevel, error) {
	id := fmt.Sprintf("TDX_%02X", svn[1])
	for _, m := range v.tcbInfo.TdxModuleIdentities {
		if m.ID != id {
			continue
		}
		for i := range m.TcbLevels {
			if uint32(svn[0]) >= m.TcbLevels[i].Tcb.Isvsvn {
				return &m.TcbLevels[i], nil
			}
		}
		return nil, fmt.Errorf("%w: TDX module %s ISVSVN %d is below every level of its identity", ErrTCBLevelNotSupported, id, svn[0])
	}
	return nil, fmt.Errorf("%w: the TCB info has no identity for TDX module %s", ErrTCBLevelNotSupported, id)
}

// moduleStatus names the status of a module level, "none" where there is none.
func moduleStatus(l *pcs.TcbLevel) string {
	if l == nil {
		return "none"
	}
	return string(l.TcbStatus)
}

// atLeast reports whether every svns[i], i >= from, is at least want[i].Svn.
func atLeast(svns []byte, want []pcs.TcbComponent, from int) bool {
	if len(svns) != len(want) {
		return false
	}
	for i := from; i < len(svns); i++ {
		if svns[i] < want[i].Svn {
			return false
		}
	}
	return true
}

// pckExtensions returns the SGX extension of the quote's PCK leaf certificate.
func pckExtensions(q *pb.QuoteV4) (*pcs.PckExtensions, error) {
	chain := q.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetPckCertificateChainData().GetPckCertChain()
	block, _ := pem.Decode(chain)
	if block == nil {
		return nil, errors.New("no PCK certificate in the quote")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("PCK certificate: %w", err)
	}
	return pcs.PckCertificateExtensions(leaf)
}

// bundleServer answers go-tdx-guest's requests to Intel's PCS from a collateral bundle: the
// library asks for the TCB info, the QE identity, the PCK CRL and the root CA CRL by URL, and reads
// each issuer chain, URL-encoded, from a response header.
type bundleServer struct {
	fmspc          string // of the TCB info, lower-case hex
	tcbInfo        []byte
	qeIdentity     []byte
	pckCRL         []byte
	rootCRL        []byte
	tcbHeader      map[string][]string
	qeHeader       map[string][]string
	pckCRLHeader   map[string][]string
	rootCRLSources []string // CRL distribution points of the root that issued the QE identity chain
}

// newBundleServer prepares b to be served; unless skipCRL, b must hold both CRLs.
func newBundleServer(b *collateral.Bundle, fmspc string, skipCRL bool) (*bundleServer, error) {
	s := &bundleServer{fmspc: fmspc, tcbInfo: b.TCBInfo, qeIdentity: b.QEIdentity}
	var err error
	if s.tcbHeader, _, err = issuerHeader("Tcb-Info-Issuer-Chain", b.TCBInfoIssuerChain); err != nil {
		return nil, fmt.Errorf("TCB info issuer chain: %w", err)
	}
	var root *x509.Certificate
	if s.qeHeader, root, err = issuerHeader("Sgx-Enclave-Identity-Issuer-Chain", b.QEIdentityIssuerChain); err != nil {
		return nil, fmt.Errorf("QE identity issuer chain: %w", err)
	}
	if skipCRL {
		return s, nil
	}
	if len(b.PCKCRL) == 0 || len(b.RootCACRL) == 0 {
		return nil, fmt.Errorf("%w: the collateral lacks the PCK CRL or the root CA CRL", ErrNoRevocationData)
	}
	if s.pckCRLHeader, _, err = issuerHeader("Sgx-Pck-Crl-Issuer-Chain", b.PCKCRLIssuerChain); err != nil {
		return nil, fmt.Errorf("PCK CRL issuer chain: %w", err)
	}
	s.pckCRL, s.rootCRL, s.rootCRLSources = b.PCKCRL, b.RootCACRL, root.CRLDistributionPoints
	return s, nil
}

// issuerHeader returns a response header carrying a PEM issuer chain (signer, root) as Intel's PCS
// sends it, and the chain's root. go-tdx-guest wants exactly two certificates and nothing else.
func issuerHeader(name string, chainPEM []byte) (map[string][]string, *x509.Certificate, error) {
	var certs []*x509.Certificate
	var norm []byte
	for rest := chainPEM; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, err
		}
		certs = append(certs, c)
		norm = append(norm, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if len(certs) != 2 {
		return nil, nil, fmt.Errorf("%d certificates, want 2 (signer, root)", len(certs))
	}
	return map[string][]string{name: {url.QueryEscape(string(norm))}}, certs[1], nil
}

// Get implements go-tdx-guest's trust.HTTPSGetter.
func (s *bundleServer) Get(u string) (map[string][]string, []byte, error) {
	switch {
	case u == pcs.TcbInfoURL(s.fmspc):
		return s.tcbHeader, s.tcbInfo, nil
	case strings.HasPrefix(u, pcs.TcbInfoURL("")):
		return nil, nil, fmt.Errorf("the collateral holds the TCB info for FMSPC %s, the quote's platform needs %s", s.fmspc, strings.TrimPrefix(u, pcs.TcbInfoURL("")))
	case u == pcs.QeIdentityURL():
		return s.qeHeader, s.qeIdentity, nil
	case s.pckCRL != nil && (u == pcs.PckCrlURL("platform") || u == pcs.PckCrlURL("processor")):
		return s.pckCRLHeader, s.pckCRL, nil
	case s.rootCRL != nil && slices.Contains(s.rootCRLSources, u):
		return nil, s.rootCRL, nil
	}
	return nil, nil, fmt.Errorf("the collateral has nothing for %s", u)
}
