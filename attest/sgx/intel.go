package sgx

import (
	"bytes"
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
// root. For each quote it finds the platform (FMSPC and PCK CA) and gets its collateral from
// Source; the Verifier made from a bundle is kept until the bundle changes. It is safe for
// concurrent use.
type IntelVerifier struct {
	Source  collateral.Source
	SkipCRL bool

	mu        sync.Mutex
	verifiers map[collateral.Platform]*bundleVerifier
}

// bundleVerifier is a Verifier and the bundle it was made from.
type bundleVerifier struct {
	bundle *collateral.Bundle
	v      *Verifier
}

// Kind returns attest.SGX.
func (iv *IntelVerifier) Kind() attest.Kind { return attest.SGX }

// Verify verifies a quote from a genuine platform at time at. The quote's PCK chain must lead
// to Intel's root before any collateral is looked for, so that a forged certificate cannot make
// it fetch collateral for platforms of its choosing.
func (iv *IntelVerifier) Verify(quote []byte, at time.Time) (*attest.Claims, error) {
	p, err := PlatformOf(quote)
	if err != nil {
		return nil, err
	}
	if err := intelChain(quote, at); err != nil {
		return nil, &Error{StepPCKChain, err}
	}
	ctx, cancel := context.WithTimeout(context.Background(), collateralTimeout)
	defer cancel()
	b, err := iv.Source(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("collateral for %s: %w", p, err)
	}
	v, err := iv.verifier(p, b)
	if err != nil {
		return nil, err
	}
	verdict, err := v.Verify(quote, at)
	if err != nil {
		return nil, err
	}
	return verdict.Claims("intel"), nil
}

// collateralTimeout bounds the wait for a platform's collateral.
const collateralTimeout = 30 * time.Second

// intelChain checks that a quote's PCK certificate chains to Intel's root at time at.
func intelChain(quote []byte, at time.Time) error {
	q, err := ParseQuote(quote)
	if err != nil {
		return err
	}
	certs, err := q.PCKCertificates()
	if err != nil {
		return err
	}
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	_, err = certs[0].Verify(x509.VerifyOptions{Roots: intelRoots, Intermediates: intermediates, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	return nil
}

// intelRoots is the pinned Intel SGX Root CA.
var intelRoots = IntelRoots()

func (iv *IntelVerifier) verifier(p collateral.Platform, b *collateral.Bundle) (*Verifier, error) {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	if c := iv.verifiers[p]; c != nil && sameBundle(c.bundle, b) {
		return c.v, nil
	}
	v, err := NewVerifier(Options{Collateral: b, SkipCRL: iv.SkipCRL})
	if err != nil {
		return nil, fmt.Errorf("collateral for %s: %w", p, err)
	}
	if iv.verifiers == nil {
		iv.verifiers = make(map[collateral.Platform]*bundleVerifier)
	}
	iv.verifiers[p] = &bundleVerifier{b, v}
	return v, nil
}

func sameBundle(a, b *collateral.Bundle) bool {
	return bytes.Equal(a.TCBInfo, b.TCBInfo) && bytes.Equal(a.QEIdentity, b.QEIdentity) &&
		bytes.Equal(a.PCKCRL, b.PCKCRL) && bytes.Equal(a.RootCACRL, b.RootCACRL) &&
		bytes.Equal(a.TCBInfoIssuerChain, b.TCBInfoIssuerChain) && bytes.Equal(a.QEIdentityIssuerChain, b.QEIdentityIssuerChain) &&
		bytes.Equal(a.PCKCRLIssuerChain, b.PCKCRLIssuerChain)
}

// PlatformOf returns the platform a quote comes from, as its PCK certificate names it: the
// FMSPC, and whether a Platform or a Processor CA issued it.
func PlatformOf(quote []byte) (collateral.Platform, error) {
	q, err := ParseQuote(quote)
	if err != nil {
		return collateral.Platform{}, err
	}
	certs, err := q.PCKCertificates()
	if err != nil {
		return collateral.Platform{}, err
	}
	ext, err := PCKExtensionOf(certs[0])
	if err != nil {
		return collateral.Platform{}, err
	}
	ca := collateral.PlatformCA
	if strings.Contains(certs[0].Issuer.CommonName, "Processor") {
		ca = collateral.ProcessorCA
	}
	return collateral.Platform{TEE: collateral.SGX, FMSPC: fmt.Sprintf("%X", ext.FMSPC), CA: ca}, nil
}
