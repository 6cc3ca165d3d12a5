package nvidia

import (
	"errors"
	"fmt"

	"github.com/ppml/ppml/attest"
)

// Step names the stage of GPU evidence verification that failed.
type Step string

// The stages of [Verify], in the order it checks evidence.
const (
	StepEvidence     Step = "evidence format"          // ParseEvidence
	StepChain        Step = "device certificate chain" // leaf → ... → pinned Device Identity CA
	StepFWID         Step = "FWID"                     // opaque-data FWID against the leaf's
	StepSignature    Step = "evidence signature"       // leaf key over request ‖ response
	StepNonce        Step = "nonce"                    // request nonce against the caller's
	StepRevocation   Step = "revocation"               // OCSP for the device and RIM chains
	StepRIM          Step = "RIM"                      // reference manifests: format, signature, chain, version
	StepMeasurements Step = "measurements"             // active RIM indices against the blocks
)

// Why a step fails: an [*Error] wraps one of these where one applies.
var (
	ErrFormat      = errors.New("malformed")                 // evidence, certificate, XML or OCSP bytes that do not parse
	ErrUnsupported = errors.New("unsupported")               // an algorithm or form this package does not verify
	ErrSignature   = errors.New("signature does not verify") // evidence or RIM signature
	ErrUntrusted   = attest.ErrUntrustedRoot                 // a chain that leads to no trusted root (attest.AnyOf moves on)
	ErrMismatch    = errors.New("mismatch")                  // FWID, nonce, RIM version or measurements differ
	ErrExpired     = errors.New("not valid at that time")    // certificate or OCSP response outside its validity
	ErrRevoked     = errors.New("revoked")                   // OCSP: revoked, on hold or unknown
	ErrMissingRIM  = errors.New("RIM missing")               // RequireRIMs and a driver or VBIOS RIM not given
	// ErrNoRevocationData: the OCSP folder has no response for a certificate.
	ErrNoRevocationData = errors.New("revocation cannot be checked")
)

// Error says at which [Step] GPU evidence failed verification; errors.Is finds the sentinel
// above that Err wraps, where one applies.
type Error struct {
	Step Step  // the stage that failed
	Err  error // why
}

// Unwrap returns the reason.
func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Error() string { return fmt.Sprintf("GPU %s: %v", e.Step, e.Err) }

// stepErr is fmt.Errorf (use %w to wrap) for the given step.
func stepErr(step Step, format string, args ...any) error {
	return &Error{step, fmt.Errorf(format, args...)}
}
