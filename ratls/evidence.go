package ratls

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	"github.com/fxamacker/cbor/v2"

	"github.com/ppml/ppml/attest"
)

// The extensions that carry evidence.
var (
	// oidTaggedEvidence is tcg-dice-tagged-evidence: a CBOR tag over [bstr evidence, bstr claims].
	oidTaggedEvidence = asn1.ObjectIdentifier{2, 23, 133, 5, 4, 9}
	// oidGramineQuote is Gramine's legacy extension holding a raw SGX quote. Gramine meant
	// 1.2.840.113741.1337.6 but wrote that OID's encoding as the content of the OID, which
	// decodes to this one.
	oidGramineQuote = asn1.ObjectIdentifier{0, 6, 9, 42, 840, 113741, 1337, 6}
)

// CBOR tags of tagged evidence, one per evidence format.
const (
	// TagIntelQuote marks an Intel TEE quote, SGX or TDX, told apart by the quote header. It is
	// the Confidential Computing Consortium's "Intel TEE quote" tag of interoperable RA-TLS, as
	// Gramine, rats-tls and rats-rs write it.
	TagIntelQuote uint64 = 60000
	// TagSNPReport marks an AMD SEV-SNP attestation report. The CCC work assigns no tag for
	// SEV-SNP yet; ppml uses the one rats-tls and rats-rs use (0x1a7504).
	TagSNPReport uint64 = 0x1a7504
)

// tagOf is the CBOR tag for the evidence of each kind.
var tagOf = map[attest.Kind]uint64{
	attest.SGX: TagIntelQuote,
	attest.TDX: TagIntelQuote,
	attest.SNP: TagSNPReport,
}

// claimPubKeyHash names the claim that binds the certificate's public key.
const claimPubKeyHash = "pubkey-hash"

// Hash algorithms of the pubkey-hash claim, by their IANA "Named Information" IDs.
const (
	hashSHA256 = 1
	hashSHA384 = 7
	hashSHA512 = 8
)

var hashes = map[uint64]func() hash.Hash{hashSHA256: sha256.New, hashSHA384: sha512.New384, hashSHA512: sha512.New}

// maxEvidence bounds an evidence extension: a DCAP quote is at most 8 KiB (Gramine's bound), a
// TDX quote or an SEV-SNP report less.
const maxEvidence = 32 << 10

// Reasons for refusing an RA-TLS certificate. Errors wrap one of them.
var (
	// ErrNoEvidence: the certificate has neither evidence extension.
	ErrNoEvidence = errors.New("no RA-TLS evidence extension")
	// ErrMalformed: an evidence extension or its CBOR does not parse.
	ErrMalformed = errors.New("malformed RA-TLS evidence")
	// ErrUnsupported: well-formed, but of a key type, CBOR tag, TEE type or hash algorithm that
	// RA-TLS does not define.
	ErrUnsupported = errors.New("unsupported RA-TLS certificate")
	// ErrBinding: the evidence does not bind the certificate's public key.
	ErrBinding = errors.New("evidence is not bound to the certificate's public key")
	// ErrNotVerified: the evidence does not verify; the verifier's error is wrapped too.
	ErrNotVerified = errors.New("evidence does not verify")
)

// Format says which extension of a certificate carried its evidence.
type Format int

// The evidence formats.
const (
	// Tagged is TCG DICE tagged evidence (2.23.133.5.4.9): the evidence binds SHA-256 of a claims
	// buffer, whose pubkey-hash claim holds a hash of the certificate's public key.
	Tagged Format = iota + 1
	// Legacy is Gramine's SGX quote extension (0.6.9.42.840.113741.1337.6): the quote binds
	// SHA-256 of the certificate's public key.
	Legacy
)

// String names the extension of the format.
func (f Format) String() string {
	switch f {
	case Tagged:
		return "TCG tagged evidence"
	case Legacy:
		return "legacy Gramine quote extension"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Evidence is the attestation evidence of an RA-TLS certificate, not yet verified.
type Evidence struct {
	Format Format
	Kind   attest.Kind
	Tag    uint64 // the CBOR tag (Tagged only)
	Data   []byte // the quote or report, for the verifier of Kind
	// Binding is what the first 32 bytes of the evidence's report data must be for it to vouch
	// for the certificate's key: SHA-256 of the claims buffer (Tagged) or of the
	// SubjectPublicKeyInfo (Legacy).
	Binding [32]byte
}

// ExtractEvidence returns the evidence of an RA-TLS certificate, as Gramine's verifier finds it:
// the tagged evidence if the certificate has that extension (and then it must be valid: there
// is no falling back), else the legacy quote. For tagged evidence it checks that the pubkey-hash
// claim holds the hash of the certificate's public key; the report data can only be checked once
// the evidence is verified ([Verify] does both). The key must be ECDSA P-256 or P-384.
func ExtractEvidence(cert *x509.Certificate) (*Evidence, error) {
	if err := checkKey(cert.PublicKey); err != nil {
		return nil, err
	}
	var tagged, legacy *pkix.Extension
	for i := range cert.Extensions {
		switch e := &cert.Extensions[i]; {
		case e.Id.Equal(oidTaggedEvidence):
			tagged = e
		case e.Id.Equal(oidGramineQuote):
			legacy = e
		}
	}
	switch {
	case tagged != nil:
		ev, err := parseTagged(tagged.Value, cert.RawSubjectPublicKeyInfo)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", Tagged, err)
		}
		return ev, nil
	case legacy != nil:
		if len(legacy.Value) > maxEvidence {
			return nil, fmt.Errorf("%s: %w: %d bytes (at most %d)", Legacy, ErrMalformed, len(legacy.Value), maxEvidence)
		}
		return &Evidence{Format: Legacy, Kind: attest.SGX, Data: legacy.Value, Binding: sha256.Sum256(cert.RawSubjectPublicKeyInfo)}, nil
	}
	return nil, fmt.Errorf("%w (want %s or %s)", ErrNoEvidence, oidTaggedEvidence, oidGramineQuote)
}

// checkKey accepts the keys Gramine's verifier accepts: ECDSA on P-256 or P-384.
func checkKey(pub any) error {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: public key is %T, want ECDSA P-256 or P-384", ErrUnsupported, pub)
	}
	if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
		return fmt.Errorf("%w: public key on curve %s, want P-256 or P-384", ErrUnsupported, k.Curve.Params().Name)
	}
	return nil
}

// decMode decodes untrusted CBOR strictly: definite lengths only, no duplicate map keys, shallow
// nesting and small containers (the claims are a handful of entries).
var decMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsAllowed,
		MaxNestedLevels:  4,
		MaxArrayElements: 16,
		MaxMapPairs:      16,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// encMode encodes in the core deterministic encoding: the shortest forms, as Gramine writes.
var encMode = func() cbor.EncMode {
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

// CBOR major types. Each item's type is checked before it is decoded, so that, say, a text
// string is not taken for a byte string.
const (
	majorUint  = 0
	majorBytes = 2
	majorArray = 4
	majorMap   = 5
	majorTag   = 6
)

var majorNames = map[byte]string{majorUint: "unsigned integer", majorBytes: "byte string", majorArray: "array", majorMap: "map", majorTag: "tag"}

// decodeAs decodes the CBOR item b, which must be of the given major type, into v.
func decodeAs(what string, b []byte, major byte, v any) error {
	if len(b) == 0 || b[0]>>5 != major {
		return fmt.Errorf("%w: %s is not a CBOR %s", ErrMalformed, what, majorNames[major])
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	return nil
}

// decodePair decodes a definite CBOR array of exactly two items.
func decodePair(what string, b []byte) (cbor.RawMessage, cbor.RawMessage, error) {
	var items []cbor.RawMessage
	if err := decodeAs(what, b, majorArray, &items); err != nil {
		return nil, nil, err
	}
	if len(items) != 2 {
		return nil, nil, fmt.Errorf("%w: %s has %d items, want 2", ErrMalformed, what, len(items))
	}
	return items[0], items[1], nil
}

// parseTagged parses tagged evidence, tag([bstr evidence, bstr claims]), and checks that its
// pubkey-hash claim matches spki.
func parseTagged(b, spki []byte) (*Evidence, error) {
	if len(b) > maxEvidence {
		return nil, fmt.Errorf("%w: %d bytes (at most %d)", ErrMalformed, len(b), maxEvidence)
	}
	var tag cbor.RawTag
	if err := decodeAs("extension", b, majorTag, &tag); err != nil {
		return nil, err
	}
	rawEvidence, rawClaims, err := decodePair("tagged content", tag.Content)
	if err != nil {
		return nil, err
	}
	ev := &Evidence{Format: Tagged, Tag: tag.Number}
	var claims []byte
	if err := decodeAs("evidence", rawEvidence, majorBytes, &ev.Data); err != nil {
		return nil, err
	}
	if err := decodeAs("claims", rawClaims, majorBytes, &claims); err != nil {
		return nil, err
	}
	if ev.Kind, err = kindOf(tag.Number, ev.Data); err != nil {
		return nil, err
	}
	if err := checkPubKeyHash(claims, spki); err != nil {
		return nil, err
	}
	ev.Binding = sha256.Sum256(claims)
	return ev, nil
}

// kindOf returns the kind of evidence a CBOR tag introduces.
func kindOf(tag uint64, evidence []byte) (attest.Kind, error) {
	switch tag {
	case TagIntelQuote:
		return intelQuoteKind(evidence)
	case TagSNPReport:
		return attest.SNP, nil
	}
	return "", fmt.Errorf("%w: CBOR tag %d (want %d, Intel TEE quote, or %d, SEV-SNP report)", ErrUnsupported, tag, TagIntelQuote, TagSNPReport)
}

// intelQuoteKind tells an SGX quote from a TDX one by its header: quote version 3 is SGX only;
// from version 4 on, the TEE type (u32 at offset 4) is 0 for SGX and 0x81 for TDX.
func intelQuoteKind(q []byte) (attest.Kind, error) {
	if len(q) < 8 {
		return "", fmt.Errorf("%w: Intel quote of %d bytes has no header", ErrMalformed, len(q))
	}
	version, teeType := binary.LittleEndian.Uint16(q), binary.LittleEndian.Uint32(q[4:])
	switch {
	case version == 3, version >= 4 && teeType == 0:
		return attest.SGX, nil
	case version >= 4 && teeType == 0x81:
		return attest.TDX, nil
	}
	return "", fmt.Errorf("%w: Intel quote version %d, TEE type %#x", ErrUnsupported, version, teeType)
}

// checkPubKeyHash parses a claims buffer, a CBOR map from non-empty text strings to claims, and
// checks that its pubkey-hash claim, bstr([uint alg, bstr hash]), holds the hash of spki. Other
// claims are ignored, as Gramine does.
func checkPubKeyHash(claims, spki []byte) error {
	var m map[string]cbor.RawMessage
	if err := decodeAs("claims", claims, majorMap, &m); err != nil {
		return err
	}
	if _, ok := m[""]; ok {
		return fmt.Errorf("%w: claims: empty claim name", ErrMalformed)
	}
	raw, ok := m[claimPubKeyHash]
	if !ok {
		return fmt.Errorf("%w: no %s claim", ErrBinding, claimPubKeyHash)
	}
	var entry []byte
	if err := decodeAs(claimPubKeyHash, raw, majorBytes, &entry); err != nil {
		return err
	}
	rawAlg, rawHash, err := decodePair(claimPubKeyHash, entry)
	if err != nil {
		return err
	}
	var alg uint64
	var got []byte
	if err := decodeAs(claimPubKeyHash+" algorithm", rawAlg, majorUint, &alg); err != nil {
		return err
	}
	if err := decodeAs(claimPubKeyHash+" value", rawHash, majorBytes, &got); err != nil {
		return err
	}
	newHash, ok := hashes[alg]
	if !ok {
		return fmt.Errorf("%w: %s algorithm %d (want %d, %d or %d: SHA-256, -384, -512)", ErrUnsupported, claimPubKeyHash, alg, hashSHA256, hashSHA384, hashSHA512)
	}
	h := newHash()
	h.Write(spki)
	if want := h.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("%w: %s claim %x, but the key hashes to %x", ErrBinding, claimPubKeyHash, got, want)
	}
	return nil
}

// claimsBuffer returns Gramine's claims buffer for a public key: {"pubkey-hash":
// bstr([1, bstr(SHA-256(spki))])}, 51 bytes.
func claimsBuffer(spki []byte) ([]byte, error) {
	h := sha256.Sum256(spki)
	entry, err := encMode.Marshal([]any{uint64(hashSHA256), h[:]})
	if err != nil {
		return nil, err
	}
	return encMode.Marshal(map[string][]byte{claimPubKeyHash: entry})
}

// taggedEvidence returns tag([bstr evidence, bstr claims]).
func taggedEvidence(tag uint64, evidence, claims []byte) ([]byte, error) {
	return encMode.Marshal(cbor.Tag{Number: tag, Content: [][]byte{evidence, claims}})
}
