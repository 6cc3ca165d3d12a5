package tdx

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sgx"
	"github.com/ppml/ppml/collateral"
)

// Options configure a [Verifier].
type Options struct {
	// Collateral is the Intel collateral for the quotes' platform: the TDX TCB info (PCS
	// /tdx/certification/v4/tcb body), the TD_QE identity, their issuer chains (TCB Signing
	// certificate, root) and the CRLs. Required.
	Collateral *collateral.Bundle
	// Roots are the trusted root CAs; nil means the Intel SGX Root CA ([sgx.IntelRoots]). A
	// simulated platform's root goes here.
	Roots *x509.CertPool
	// Platform names the root of trust in the claims; "" means attest.Intel.
	Platform attest.Platform
	// SkipCRL skips revocation checking. Without it the bundle must hold the PCK CRL with its
	// issuer chain and the root CA CRL, all current at the verification time.
	SkipCRL bool
}

// Verifier verifies TDX quotes against one collateral bundle, whose signatures and chains it
// checks once. It implements [attest.Verifier] and is safe for concurrent use.
type Verifier struct {
	v        *sgx.Verifier
	platform attest.Platform
}

var _ attest.Verifier = (*Verifier)(nil)

// NewVerifier checks the collateral of opts and returns a Verifier for it. Failures are
// *sgx.Error values naming the collateral piece.
func NewVerifier(opts Options) (*Verifier, error) {
	if opts.Collateral == nil {
		return nil, errors.New("no TDX collateral")
	}
	v, err := sgx.NewVerifier(sgx.Options{Collateral: opts.Collateral, Roots: opts.Roots, SkipCRL: opts.SkipCRL})
	if err != nil {
		return nil, fmt.Errorf("TDX collateral: %w", err)
	}
	return &Verifier{v: v, platform: cmp.Or(opts.Platform, attest.Intel)}, nil
}

// Kind returns attest.TDX.
func (v *Verifier) Kind() attest.Kind { return attest.TDX }

// Verify verifies a TDX quote as of time at and returns its claims.
func (v *Verifier) Verify(_ context.Context, evidence []byte, at time.Time) (*attest.Claims, error) {
	vd, err := v.Verdict(evidence, at)
	if err != nil {
		return nil, err
	}
	return vd.Claims(v.platform), nil
}

// Verdict verifies a TDX quote as of time at and returns the engine's full verdict. An SGX quote
// is refused.
func (v *Verifier) Verdict(evidence []byte, at time.Time) (*sgx.Verdict, error) {
	if q, err := sgx.ParseQuote(evidence); err == nil && !q.IsTD() {
		return nil, &sgx.Error{Step: sgx.StepQuote, Err: fmt.Errorf("%w: an SGX quote, not a TDX one", sgx.ErrUnsupported), TEE: "TDX"}
	}
	return v.v.Verify(evidence, at)
}

// NewIntelVerifier returns the attest.Verifier of TDX quotes from genuine Intel platforms, which
// gets each platform's collateral from source (see sgx.IntelVerifier).
func NewIntelVerifier(source collateral.Source, skipCRL bool) attest.Verifier {
	return &sgx.IntelVerifier{Source: source, SkipCRL: skipCRL, TDX: true}
}
