package sgx

import (
	"errors"
	"fmt"

	"github.com/ppml/ppml/attest"
)

// Step names the stage of quote verification that failed.
type Step string

// The stages of [Verify], in the order it checks a quote. The collateral's own signatures and
// chains are checked before, by [NewVerifier], and fail with StepTCBInfo, StepQEIdentity or
// StepRevocation.
const (
	StepCollateral     Step = "collateral"            // no collateral bundle given
	StepQuote          Step = "quote format"          // ParseQuote
	StepPCKChain       Step = "PCK certificate chain" // leaf → PCK CA → pinned root, PCK extension
	StepRevocation     Step = "revocation"            // root CA CRL and PCK CRL
	StepQEReport       Step = "QE report"             // PCK signature, attestation-key binding
	StepQuoteSignature Step = "quote signature"       // attestation key over header ‖ report body
	StepQEIdentity     Step = "QE identity"           // signature, validity, TEE, QE report match
	StepTCBInfo        Step = "TCB info"              // signature, validity, TEE, FMSPC and PCE-ID match
	StepTDXModule      Step = "TDX module identity"   // MRSIGNERSEAM and SEAMATTRIBUTES of a TD's module
	StepTCBStatus      Step = "TCB status"            // TCB level selection (platform, module, QE), Revoked
	StepAttributes     Step = "enclave attributes"    // INIT and MODE64BIT set, no provisioning keys
)

// Error is a verification failure: the step that failed and why. Err wraps one of the sentinel
// errors below where one applies, so callers can test with errors.Is and errors.As.
type Error struct {
	Step Step
	Err  error
	TEE  string // what the quote attests: "SGX" (also when empty) or "TDX"
}

func (e *Error) Error() string {
	tee := e.TEE
	if tee == "" {
		tee = "SGX"
	}
	return tee + " " + string(e.Step) + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// stepErr returns an *Error for step whose message is formatted like fmt.Errorf (use %w to wrap).
func stepErr(step Step, format string, args ...any) *Error {
	return &Error{Step: step, Err: fmt.Errorf(format, args...)}
}

// Reasons for failure, wrapped inside an [*Error].
var (
	// ErrFormat: bytes that do not parse (quote, certificate, extension, JSON, CRL).
	ErrFormat = errors.New("malformed")
	// ErrUnsupported: a well-formed structure of a version or type this package does not verify.
	ErrUnsupported = errors.New("unsupported")
	// ErrSignature: a signature does not verify.
	ErrSignature = errors.New("signature does not verify")
	// ErrUntrusted: a certificate chain does not lead to a trusted root. It is
	// attest.ErrUntrustedRoot, so that attest.AnyOf tries the next verifier.
	ErrUntrusted = attest.ErrUntrustedRoot
	// ErrMismatch: two values that must agree do not (FMSPC, PCE-ID, MRSIGNER, report data...).
	ErrMismatch = errors.New("mismatch")
	// ErrNotYetValid: a certificate or collateral piece is not valid yet at the verification time.
	ErrNotYetValid = errors.New("not yet valid")
	// ErrExpired: a certificate or collateral piece has expired at the verification time.
	ErrExpired = errors.New("expired")
	// ErrStaleCRL: a CRL is past its nextUpdate (or before its thisUpdate) at the verification time.
	ErrStaleCRL = errors.New("stale CRL")
	// ErrNoRevocationData: CRLs are missing, so revocation cannot be checked (see Options.SkipCRL).
	ErrNoRevocationData = errors.New("revocation cannot be checked")
	// ErrRevoked: a certificate is on a CRL, or the TCB status is Revoked.
	ErrRevoked = errors.New("revoked")
	// ErrTCBLevelNotSupported: the platform's TCB is below every TCB level of the TCB info.
	ErrTCBLevelNotSupported = errors.New("TCB level not supported")
)
