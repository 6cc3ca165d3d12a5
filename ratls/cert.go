package ratls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"time"

	"github.com/ppml/ppml/attest"
)

// The fixed fields of Gramine's RA-TLS certificates.
var (
	// gramineName is the DER subject and issuer "CN=RATLS,O=GramineDevelopers,C=US", in that
	// order, CN and O as UTF8String and C as PrintableString, as mbedTLS writes it.
	gramineName = mustMarshal(pkix.RDNSequence{
		{{Type: oidCommonName, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("RATLS")}}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("GramineDevelopers")}}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 6}, Value: asn1.RawValue{Tag: asn1.TagPrintableString, Bytes: []byte("US")}}},
	})
	notBefore = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter  = time.Date(2030, 12, 31, 23, 59, 59, 0, time.UTC)

	oidCommonName       = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidSubjectKeyID     = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidAuthorityKeyID   = asn1.ObjectIdentifier{2, 5, 29, 35}
)

func mustMarshal(v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// NewCertificate makes a fresh ECDSA P-384 key and a self-signed RA-TLS certificate for it, with
// evidence from a that binds the key. The certificate has the layout of Gramine's
// (ra_tls_create_key_and_crt): serial 1, subject and issuer CN=RATLS,O=GramineDevelopers,C=US,
// validity 2001-01-01 to 2030-12-31, signed ecdsa-with-SHA256, and the non-critical extensions
// basicConstraints CA:FALSE, subject and authority key identifier (SHA-1 of the public key), then
// the evidence.
//
// For SGX it attests twice, as Gramine does: a quote binding SHA-256 of the key in the legacy
// Gramine extension, and a second quote in TCG tagged evidence (CBOR tag [TagIntelQuote]) that
// binds SHA-256 of the claims {"pubkey-hash": [1, SHA-256 of the key]}. Other kinds get the
// tagged evidence only, under the tag of their kind ([TagIntelQuote] for TDX, [TagSNPReport]
// for SEV-SNP).
//
// When a keeps an event log of its run-time measurements ([attest.LogAttester]: a TD's RTMR3),
// the log read with the tagged evidence follows it, in ppml's event log extension ([EventLog]).
//
// When a is also an [attest.GPUAttester] (such as [attest.WithGPUs]), the certificate carries
// the evidence of its GPUs too, in ppml's GPU extension after the others, each GPU's SPDM nonce
// the key binding of the CPU evidence: SHA-256 of the claims buffer ([GPUEvidence]).
func NewCertificate(a attest.Attester) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate key: %w", err)
	}
	return NewCertificateWithKey(a, key)
}

// NewCertificateWithKey is NewCertificate for a key of the caller's: P-384 as Gramine makes them,
// or P-256, which Gramine's verifier and Verify accept too and which costs Go a fraction of
// P-384's time on both sides of a handshake.
func NewCertificateWithKey(a attest.Attester, key *ecdsa.PrivateKey) (tls.Certificate, error) {
	if c := key.Curve; c != elliptic.P256() && c != elliptic.P384() {
		return tls.Certificate{}, fmt.Errorf("%w: a %s key (want P-256 or P-384)", ErrUnsupported, c.Params().Name)
	}
	kind := a.Kind()
	tag, ok := tagOf[kind]
	if !ok {
		return tls.Certificate{}, fmt.Errorf("no RA-TLS evidence format for %q evidence", kind)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("encode public key: %w", err)
	}
	var evidence []pkix.Extension
	if kind == attest.SGX {
		quote, _, err := attestTo(a, sha256.Sum256(spki))
		if err != nil {
			return tls.Certificate{}, err
		}
		evidence = append(evidence, pkix.Extension{Id: oidGramineQuote, Value: quote})
	}
	tagged, binding, log, err := taggedExtension(a, tag, spki)
	if err != nil {
		return tls.Certificate{}, err
	}
	evidence = append(evidence, tagged)
	if log != nil {
		ext, err := eventLogExtension(log)
		if err != nil {
			return tls.Certificate{}, err
		}
		evidence = append(evidence, ext)
	}
	if g, ok := a.(attest.GPUAttester); ok {
		// Each GPU's nonce is the key binding of the CPU evidence's report data.
		ext, err := gpuExtension(g, binding)
		if err != nil {
			return tls.Certificate{}, err
		}
		evidence = append(evidence, ext)
	}

	keyID, err := subjectKeyID(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("key identifier: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:       big.NewInt(1),
		RawSubject:         gramineName,
		NotBefore:          notBefore,
		NotAfter:           notAfter,
		SignatureAlgorithm: x509.ECDSAWithSHA256,
		// All extensions are given here, in Gramine's order; x509 adds none of its own then
		// (its basicConstraints would be critical).
		ExtraExtensions: append([]pkix.Extension{
			{Id: oidBasicConstraints, Value: mustMarshal(struct{}{})}, // SEQUENCE {}: cA FALSE, no path length
			{Id: oidSubjectKeyID, Value: mustMarshal(keyID)},
			{Id: oidAuthorityKeyID, Value: mustMarshal(struct {
				KeyID []byte `asn1:"optional,tag:0"`
			}{keyID})},
		}, evidence...),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sign certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse the new certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// subjectKeyID is what mbedTLS writes as the key identifier: SHA-1 of the public key point (the
// subjectPublicKey BIT STRING's content, RFC 5280 method 1).
func subjectKeyID(key *ecdsa.PrivateKey) ([]byte, error) {
	pub, err := key.PublicKey.ECDH()
	if err != nil {
		return nil, err
	}
	id := sha1.Sum(pub.Bytes())
	return id[:], nil
}

// taggedExtension attests to a claims buffer binding spki and returns the tagged evidence
// extension, the binding, SHA-256 of the claims buffer, and the event log that goes with the
// evidence (nil: none).
func taggedExtension(a attest.Attester, tag uint64, spki []byte) (pkix.Extension, [32]byte, []byte, error) {
	claims, err := claimsBuffer(spki)
	if err != nil {
		return pkix.Extension{}, [32]byte{}, nil, fmt.Errorf("claims buffer: %w", err)
	}
	binding := sha256.Sum256(claims)
	evidence, log, err := attestTo(a, binding)
	if err != nil {
		return pkix.Extension{}, binding, nil, err
	}
	value, err := taggedEvidence(tag, evidence, claims)
	if err != nil {
		return pkix.Extension{}, binding, nil, fmt.Errorf("%s: %w", Tagged, err)
	}
	return pkix.Extension{Id: oidTaggedEvidence, Value: value}, binding, log, nil
}

// attestTo gets evidence whose report data begins with binding, and the event log that goes
// with it (attest.AttestWithLog); the other 32 bytes are zero, unless the attester puts
// something of its own there (attest.ForWorkload).
func attestTo(a attest.Attester, binding [32]byte) ([]byte, []byte, error) {
	var rd attest.ReportData
	copy(rd[:], binding[:])
	evidence, log, err := attest.AttestWithLog(a, rd)
	if err != nil {
		return nil, nil, fmt.Errorf("%s attestation: %w", a.Kind(), err)
	}
	return evidence, log, nil
}
