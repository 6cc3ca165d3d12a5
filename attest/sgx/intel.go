package sgx

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/collateral"
)

// IntelVerifier is an attest.Verifier for quotes from genuine Intel platforms, trusting Intel's
// root: of SGX enclaves, or with TDX set of TDX trust domains. For each platform (FMSPC and PCK CA) it gets the collateral from Source and keeps the
// Verifier made from it until the collateral's next update; then it asks Source again. It is safe
// for concurrent use.
type IntelVerifier struct {
	Source  collateral.Source
	SkipCRL bool
	TDX     bool // verify TDX quotes (kind attest.TDX) instead of SGX quotes

	mu        sync.Mutex
	verifiers map[collateral.Platform]*platformVerifier
}

// platformVerifier is a platform's Verifier and when its collateral is next updated.
type platformVerifier struct {
	v    *Verifier
	next time.Time
}

// Kind returns attest.TDX with TDX set, attest.SGX otherwise.
func (iv *IntelVerifier) Kind() attest.Kind {
	if iv.TDX {
		return attest.TDX
	}
	return attest.SGX
}

// collateralTimeout bounds the wait for a platform's collateral, within the caller's context.
const collateralTimeout = 30 * time.Second

// Verify verifies a quote from a genuine platform at time at. The platform's collateral, when it
// has none current, is fetched under ctx.
func (iv *IntelVerifier) Verify(ctx context.Context, quote []byte, at time.Time) (*attest.Claims, error) {
	q, err := ParseQuote(quote)
	if err == nil && q.IsTD() != iv.TDX {
		err = fmt.Errorf("%w: %s quote, want %s", ErrUnsupported, teeName(q), strings.ToUpper(string(iv.Kind())))
	}
	if err != nil {
		return nil, &Error{Step: StepQuote, Err: err}
	}
	p, certs, err := q.platform()
	if err != nil {
		return nil, &Error{Step: StepPCKChain, Err: err}
	}
	v, err := iv.verifier(ctx, p, certs, at)
	if err != nil {
		return nil, err
	}
	verdict, err := v.Verify(quote, at)
	if err != nil {
		return nil, err
	}
	return verdict.Claims(attest.Intel), nil
}

// verifier returns the Verifier of platform p, getting its collateral if it has none current.
// Before any collateral is looked for, the quote's PCK chain must lead to Intel's root, so that
// a forged certificate cannot make it fetch collateral for platforms of its choosing.
func (iv *IntelVerifier) verifier(ctx context.Context, p collateral.Platform, certs []*x509.Certificate, at time.Time) (*Verifier, error) {
	iv.mu.Lock()
	c := iv.verifiers[p]
	iv.mu.Unlock()
	if c != nil && at.Before(c.next) {
		return c.v, nil
	}
	if err := intelChain(certs, at); err != nil {
		return nil, &Error{Step: StepPCKChain, Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, collateralTimeout)
	defer cancel()
	b, err := iv.Source(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("collateral for %s: %w", p, err)
	}
	next, err := b.NextUpdate()
	if err != nil {
		return nil, fmt.Errorf("collateral for %s: %w", p, err)
	}
	v, err := NewVerifier(Options{Collateral: b, SkipCRL: iv.SkipCRL})
	if err != nil {
		return nil, fmt.Errorf("collateral for %s: %w", p, err)
	}
	iv.mu.Lock()
	if iv.verifiers == nil {
		iv.verifiers = make(map[collateral.Platform]*platformVerifier)
	}
	iv.verifiers[p] = &platformVerifier{v, next}
	iv.mu.Unlock()
	return v, nil
}

// intelRoots is the pinned Intel SGX Root CA.
var intelRoots = IntelRoots()

// intelChain checks that a PCK chain (leaf, CA, root) leads to Intel's root at time at.
func intelChain(certs []*x509.Certificate, at time.Time) error {
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: intelRoots, Intermediates: intermediates, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	return nil
}

// PlatformOfQuote returns the platform of an SGX or TDX quote, whose collateral verifies it: the
// quote's TEE, and the FMSPC and PCK CA of the PCK certificate in its certification data. It
// parses the quote as the verifier does but checks no signature: it only tells what collateral
// to fetch (ppml collateral fetch --quote).
func PlatformOfQuote(quote []byte) (collateral.Platform, error) {
	q, err := ParseQuote(quote)
	if err != nil {
		return collateral.Platform{}, err
	}
	p, _, err := q.platform()
	return p, err
}

// platform returns the platform of q and its PCK chain.
func (q *Quote) platform() (collateral.Platform, []*x509.Certificate, error) {
	certs, err := q.PCKCertificates()
	if err != nil {
		return collateral.Platform{}, nil, err
	}
	p, err := platformOf(certs[0], q.IsTD())
	return p, certs, err
}

// platformOf returns the platform a PCK certificate names: the TEE, the FMSPC of its SGX
// extension, and whether a Platform or a Processor CA issued it (its issuer's CN).
func platformOf(pck *x509.Certificate, tdx bool) (collateral.Platform, error) {
	p := collateral.Platform{TEE: collateral.SGX}
	if tdx {
		p.TEE = collateral.TDX
	}
	switch cn := pck.Issuer.CommonName; {
	case strings.Contains(cn, "Processor"):
		p.CA = collateral.ProcessorCA
	case strings.Contains(cn, "Platform"):
		p.CA = collateral.PlatformCA
	default:
		return p, fmt.Errorf("%w: the PCK certificate's issuer %q is neither the Processor nor the Platform CA", ErrFormat, cn)
	}
	ext, err := PCKExtensionOf(pck)
	if err != nil {
		return p, err
	}
	p.FMSPC = fmt.Sprintf("%X", ext.FMSPC)
	return p, nil
}
