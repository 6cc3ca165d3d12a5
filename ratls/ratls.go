// Package ratls makes and verifies RA-TLS certificates in Gramine's format, and configures
// crypto/tls for both ends of an attested connection.
//
// An RA-TLS certificate is self-signed by a key made for it; attestation evidence in its
// extensions binds that key to a TEE. Two extensions carry evidence:
//
//   - TCG DICE tagged evidence (2.23.133.5.4.9), as the CCC's interoperable RA-TLS defines it:
//     CBOR tag([bstr evidence, bstr claims]), the evidence's report data beginning with SHA-256
//     of the claims, and the claims {"pubkey-hash": bstr([alg, bstr hash of the public key])}.
//     The tag names the evidence format: [TagIntelQuote] for SGX and TDX quotes,
//     [TagSNPReport] for SEV-SNP reports.
//   - Gramine's legacy extension (0.6.9.42.840.113741.1337.6): a raw SGX quote whose report data
//     begins with SHA-256 of the public key.
//
// Two more extensions are ppml's own, and Gramine ignores them: the evidence of the GPUs
// attached to the TEE ([GPUEvidence], docs/gpu.md), and the event log of a TD's RTMR3
// ([EventLog], docs/cvm.md).
//
// Public keys are hashed as their DER SubjectPublicKeyInfo. [NewCertificate] writes certificates
// Gramine's verifier accepts; [Verify] accepts Gramine's certificates, following Gramine's
// ra_tls_verify_callback: the tagged evidence is preferred, the certificate's chain and validity
// dates are ignored, and the evidence is verified by the caller's [attest.Registry].
//
// [ServerConfig] and [ClientConfig] configure crypto/tls as Gramine's secret provisioning does:
// an attested client (the TEE) presents an RA-TLS certificate to a server with an ordinary one.
// The server verifies the client's certificate after the handshake, with [VerifyPeer], so that
// it can tell a refused client why.
package ratls

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/ppml/ppml/attest"
)

// Verify checks an RA-TLS certificate as of the time at, fetching what the verifier needs under ctx: it extracts the evidence
// ([ExtractEvidence]), verifies it with the registry's verifier for its kind, checks that its
// report data begins with the key binding, and returns the claims. The upper 32 bytes of the
// report data are not checked, as Gramine does not check them.
//
// The certificate's own signature, chain and validity dates are ignored, as in Gramine: what
// vouches for the key is the evidence, and in TLS the handshake proves that the peer holds the
// key. Errors wrap ErrNoEvidence, ErrMalformed, ErrUnsupported, ErrBinding or ErrNotVerified
// (together with the verifier's own error); evidence that verifies but binds another key is a
// [*BindingError], which holds its claims for the record.
func Verify(ctx context.Context, cert *x509.Certificate, reg attest.Registry, at time.Time) (*attest.Claims, error) {
	ev, err := ExtractEvidence(cert)
	if err != nil {
		return nil, err
	}
	claims, err := reg.Verify(ctx, ev.Kind, ev.Data, at)
	if err != nil {
		return nil, fmt.Errorf("%s evidence (%s): %w: %w", ev.Kind, ev.Format, ErrNotVerified, err)
	}
	if len(claims.ReportData) < len(ev.Binding) || !bytes.Equal(claims.ReportData[:len(ev.Binding)], ev.Binding[:]) {
		return nil, &BindingError{Claims: claims, msg: fmt.Sprintf("%s evidence (%s): %v: report data %s, want it to begin with %x", ev.Kind, ev.Format, ErrBinding, claims.ReportData, ev.Binding)}
	}
	return claims, nil
}

// A BindingError is genuine evidence presented with a key that it does not bind: evidence taken
// from another TEE's certificate, or made for another key. It wraps [ErrBinding].
type BindingError struct {
	// Claims are the evidence's verified claims, which vouch for another key: they say where the
	// evidence came from (for an audit record), never that this peer may be trusted.
	Claims *attest.Claims
	msg    string
}

func (e *BindingError) Error() string { return e.msg }
func (e *BindingError) Unwrap() error { return ErrBinding }
