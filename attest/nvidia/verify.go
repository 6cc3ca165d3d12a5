package nvidia

import (
	"bytes"
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// Options configure [Verify].
type Options struct {
	// Time is the verification time; required.
	Time time.Time
	// Nonce is the 32-byte nonce the verifier sent; required.
	Nonce []byte
	// DeviceRoots and RIMRoots are the trusted roots; nil means NVIDIA's ([DeviceRoots],
	// [RIMRoots]). Tests and simulated GPUs inject their own.
	DeviceRoots, RIMRoots *x509.CertPool
	// RIMs are the reference manifests (XML) to compare the measurements with: the driver's,
	// the VBIOS's, or both. None: the measurements are not compared ("unavailable").
	RIMs [][]byte
	// RequireRIMs fails verification unless both a driver and a VBIOS RIM are given.
	RequireRIMs bool
	// OCSP gives recorded OCSP responses; nil skips revocation checking.
	OCSP OCSPSource
	// AllowHold accepts certificates that OCSP reports on hold (certificateHold).
	AllowHold bool
}

// Measurement results of a [Verdict].
const (
	MeasurementsMatch       = "match"
	MeasurementsMismatch    = "mismatch"
	MeasurementsUnavailable = "unavailable"
)

// Verdict is what verification established about a GPU.
type Verdict struct {
	Evidence     *Evidence
	Chain        []*x509.Certificate // the verified device chain, leaf to root
	Arch         string              // "Hopper", "Blackwell" or ""
	FWID         []byte
	Revocation   string // "good" or "unchecked"
	Measurements string // MeasurementsMatch, MeasurementsMismatch or MeasurementsUnavailable
	// Mismatched lists the RIM indices (0-based; SPDM block i+1) whose block matches none of
	// the RIM's alternatives.
	Mismatched []int
	RIMs       []RIMResult
}

// RIMResult is one RIM as verification used it.
type RIMResult struct {
	ID        string
	Version   string
	Component string // "driver" or "vbios"
	Valid     bool   // signature, chain, validity, revocation and version all hold
}

// Verify verifies GPU evidence (a GET_MEASUREMENTS request and response, raw bytes) with the
// device certificate chain (PEM, leaf first), step by step as the package comment lists. It
// returns the Verdict together with an error when the measurements do not match the RIMs, so
// that the caller can show which indices differ; every other failure returns no Verdict. Every
// error is an [*Error].
func Verify(evidence, chainPEM []byte, opts Options) (*Verdict, error) {
	if opts.Time.IsZero() {
		return nil, stepErr(StepEvidence, "no verification time given")
	}
	ev, err := ParseEvidence(evidence)
	if err != nil {
		return nil, err
	}
	certs, err := ParseChain(chainPEM)
	if err != nil {
		return nil, &Error{Step: StepChain, Err: err}
	}
	if len(certs) < 2 {
		return nil, stepErr(StepChain, "%w: %d certificate; the chain must hold the GPU's leaf and its CAs up to the root", ErrUntrusted, len(certs))
	}
	roots := opts.DeviceRoots
	if roots == nil {
		roots = DeviceRoots()
	}
	chain, err := verifyChain(certs, roots, opts.Time)
	if err != nil {
		return nil, &Error{Step: StepChain, Err: err}
	}
	v := &Verdict{Evidence: ev, Chain: chain, Arch: Arch(chain), Revocation: "unchecked", Measurements: MeasurementsUnavailable}
	if v.FWID, err = LeafFWID(chain[0]); err != nil {
		return nil, &Error{Step: StepFWID, Err: err}
	}
	if !bytes.Equal(v.FWID, ev.Response.Opaque.FWID()) {
		return nil, stepErr(StepFWID, "%w: the evidence reports FWID %x, its leaf certificate %x", ErrMismatch, ev.Response.Opaque.FWID(), v.FWID)
	}
	if err := checkSignature(ev, chain[0]); err != nil {
		return nil, &Error{Step: StepSignature, Err: err}
	}
	if len(opts.Nonce) != NonceSize {
		return nil, stepErr(StepNonce, "the expected nonce has %d bytes, want %d", len(opts.Nonce), NonceSize)
	}
	if !bytes.Equal(ev.Request.Nonce[:], opts.Nonce) {
		return nil, stepErr(StepNonce, "%w: the evidence answers nonce %x, not %x", ErrMismatch, ev.Request.Nonce[:], opts.Nonce)
	}
	var oc *ocspChecker
	if opts.OCSP != nil {
		oc = &ocspChecker{src: opts.OCSP, at: opts.Time, allowHold: opts.AllowHold}
		// The leaf is made by the GPU itself; NVIDIA's OCSP service answers from its issuer up.
		if err := oc.check(chain, 1); err != nil {
			return nil, &Error{Step: StepRevocation, Err: err}
		}
		v.Revocation = "good"
	}
	if err := v.compareRIMs(opts, oc); err != nil {
		return v, err
	}
	return v, nil
}

func checkSignature(ev *Evidence, leaf *x509.Certificate) error {
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P384() {
		return fmt.Errorf("%w: the leaf %q has no ECDSA P-384 key", ErrUnsupported, leaf.Subject.CommonName)
	}
	sum := sha512.Sum384(ev.Raw[:ev.SignedLen])
	sig := ev.Response.Signature
	r, s := new(big.Int).SetBytes(sig[:48]), new(big.Int).SetBytes(sig[48:])
	if !ecdsa.Verify(pub, sum[:], r, s) {
		return fmt.Errorf("%w with the key of %q", ErrSignature, leaf.Subject.CommonName)
	}
	return nil
}

// compareRIMs verifies the RIMs opts gives, checks they are for the versions the GPU runs, and
// compares every active index.
func (v *Verdict) compareRIMs(opts Options, oc *ocspChecker) error {
	op := &v.Evidence.Response.Opaque
	driver, vbios := strings.ToLower(op.DriverVersion()), strings.ToLower(op.VBIOSVersion())
	var rims []*RIM
	for i, b := range opts.RIMs {
		r, err := VerifyRIM(b, RIMOptions{Time: opts.Time, Roots: opts.RIMRoots})
		if err != nil {
			if p, perr := ParseRIM(b); perr == nil {
				v.RIMs = append(v.RIMs, RIMResult{ID: p.ID, Version: p.Version})
			}
			return stepErr(StepRIM, "RIM %d: %w", i+1, err)
		}
		res := RIMResult{ID: r.ID, Version: r.Version}
		switch r.Version {
		case driver:
			res.Component = "driver"
		case vbios:
			res.Component = "vbios"
		default:
			return stepErr(StepRIM, "%w: RIM %d (%s) is for version %s, but the GPU runs driver %s and VBIOS %s", ErrMismatch, i+1, r.ID, r.Version, driver, vbios)
		}
		if arch := ProductArch(r.Product); arch == "" || arch != v.Arch {
			return stepErr(StepRIM, "%w: RIM %d (%s) is for a %s, but the GPU is %s", ErrMismatch, i+1, r.ID, r.Product, cmp.Or(v.Arch, "of an architecture not known"))
		}
		if slices.ContainsFunc(v.RIMs, func(o RIMResult) bool { return o.Component == res.Component }) {
			return stepErr(StepRIM, "two %s RIMs given", res.Component)
		}
		if oc != nil {
			if err := oc.check(r.Chain, 0); err != nil {
				return &Error{Step: StepRevocation, Err: fmt.Errorf("RIM %s: %w", r.ID, err)}
			}
		}
		res.Valid = true
		v.RIMs = append(v.RIMs, res)
		rims = append(rims, r)
	}
	if opts.RequireRIMs && len(rims) < 2 {
		return stepErr(StepRIM, "%w: --require-rims needs the driver RIM and the VBIOS RIM", ErrMissingRIM)
	}
	if len(rims) == 0 {
		return nil
	}
	mismatched, err := CompareMeasurements(&v.Evidence.Response, rims)
	if err != nil {
		return &Error{Step: StepMeasurements, Err: err}
	}
	v.Mismatched = mismatched
	if len(mismatched) > 0 {
		v.Measurements = MeasurementsMismatch
		return stepErr(StepMeasurements, "%w: RIM indices %v differ from the GPU's", ErrMismatch, mismatched)
	}
	v.Measurements = MeasurementsMatch
	return nil
}

// CompareMeasurements compares every active index i of the RIMs with measurement block i+1 and
// returns the indices where the block is missing or matches none of the alternatives. Two RIMs
// may not both claim an active index.
func CompareMeasurements(r *Response, rims []*RIM) ([]int, error) {
	owner := map[int]string{}
	var mismatched []int
	for _, rim := range rims {
		for _, g := range rim.Measurements {
			if !g.Active {
				continue
			}
			if o, ok := owner[g.Index]; ok {
				return nil, fmt.Errorf("%w: RIM %s and RIM %s both claim index %d", ErrMismatch, o, rim.ID, g.Index)
			}
			owner[g.Index] = rim.ID
			b := r.Block(g.Index + 1)
			if b == nil || !slices.ContainsFunc(g.Values, func(want []byte) bool { return bytes.Equal(want, b.Value) }) {
				mismatched = append(mismatched, g.Index)
			}
		}
	}
	slices.Sort(mismatched)
	return mismatched, nil
}

// HexNonce parses a nonce given in hex.
func HexNonce(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != NonceSize {
		return nil, fmt.Errorf("the nonce must be %d bytes in hex (%d hex digits)", NonceSize, 2*NonceSize)
	}
	return b, nil
}
