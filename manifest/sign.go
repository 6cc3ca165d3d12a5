package manifest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
)

// signatureFormat names the signature file's format and starts the signed message.
const signatureFormat = "ppml-manifest-signature/1"

// Signature is a manifest's signature, the simulated platform's SIGSTRUCT: it binds the
// measurement (MRENCLAVE) and the identity the workload reports with it to the signer, whose
// public key's hash is MRSIGNER. It is kept next to the manifest (SignaturePath).
//
// The signed message is the bytes of "ppml-manifest-signature/1", a zero byte, MREnclave,
// ISVProdID and ISVSVN as big-endian uint16, and one byte that is 1 for a debug workload, else 0.
// An Ed25519 key signs it as it is; an ECDSA P-256 key signs its SHA-256 (ASN.1 signature).
type Signature struct {
	MREnclave         [32]byte
	ISVProdID, ISVSVN uint16
	Debug             bool
	PublicKey         []byte // the signer's public key, DER SubjectPublicKeyInfo
	Value             []byte // the signature
}

// SignaturePath is where the signature of the manifest file at manifestPath is kept.
func SignaturePath(manifestPath string) string { return manifestPath + ".sig" }

// Sign signs m, whose trusted files must all be hashed, with an Ed25519 or ECDSA P-256 key.
func Sign(m *Manifest, key crypto.Signer) (*Signature, error) {
	if err := m.CheckHashed(); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	s := &Signature{MREnclave: Measure(m), ISVProdID: m.ISVProdID, ISVSVN: m.ISVSVN, Debug: m.Debug, PublicKey: der}
	msg := s.message()
	switch pub := key.Public().(type) {
	case ed25519.PublicKey:
		s.Value, err = key.Sign(rand.Reader, msg, crypto.Hash(0))
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, errUnsupportedKey
		}
		digest := sha256.Sum256(msg)
		s.Value, err = key.Sign(rand.Reader, digest[:], crypto.SHA256)
	default:
		return nil, errUnsupportedKey
	}
	if err != nil {
		return nil, fmt.Errorf("signing the manifest: %w", err)
	}
	return s, nil
}

var errUnsupportedKey = errors.New("a manifest signing key is Ed25519 or ECDSA P-256 (ppml manifest gen-key makes one)")

func (s *Signature) message() []byte {
	b := append([]byte(signatureFormat), 0)
	b = append(b, s.MREnclave[:]...)
	b = binary.BigEndian.AppendUint16(b, s.ISVProdID)
	b = binary.BigEndian.AppendUint16(b, s.ISVSVN)
	if s.Debug {
		return append(b, 1)
	}
	return append(b, 0)
}

// MRSigner returns the signer's measurement: the SHA-256 of its public key (DER
// SubjectPublicKeyInfo).
func (s *Signature) MRSigner() [32]byte { return sha256.Sum256(s.PublicKey) }

// MRSigner returns the measurement of the signer whose public key is pub.
func MRSigner(pub crypto.PublicKey) ([32]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(der), nil
}

// signatureFile is the signature file: JSON, binary fields in hex.
type signatureFile struct {
	Format    string `json:"format"`
	MREnclave string `json:"mrenclave"`
	ISVProdID uint16 `json:"isv_prod_id"`
	ISVSVN    uint16 `json:"isv_svn"`
	Debug     bool   `json:"debug"`
	PublicKey string `json:"public_key"`
	Signature string `json:"signature"`
}

// Marshal returns the signature file's content.
func (s *Signature) Marshal() []byte {
	b, _ := json.MarshalIndent(signatureFile{
		Format: signatureFormat, MREnclave: hex.EncodeToString(s.MREnclave[:]),
		ISVProdID: s.ISVProdID, ISVSVN: s.ISVSVN, Debug: s.Debug,
		PublicKey: hex.EncodeToString(s.PublicKey), Signature: hex.EncodeToString(s.Value),
	}, "", "  ")
	return append(b, '\n')
}

// ParseSignature reads a signature file and checks the signature: a Signature it returns was
// made by the key it names. Whether it is the signature of a given manifest is Verify's to say.
func ParseSignature(b []byte) (*Signature, error) {
	var f signatureFile
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&f); err != nil {
		return nil, fmt.Errorf("not a ppml manifest signature: %w", err)
	}
	if f.Format != signatureFormat {
		return nil, fmt.Errorf("signature format %q is not %s", f.Format, signatureFormat)
	}
	s := &Signature{ISVProdID: f.ISVProdID, ISVSVN: f.ISVSVN, Debug: f.Debug}
	mr, err := hex.DecodeString(f.MREnclave)
	if err != nil || len(mr) != len(s.MREnclave) {
		return nil, errors.New("the manifest signature's mrenclave is not 32 bytes in hex")
	}
	copy(s.MREnclave[:], mr)
	if s.PublicKey, err = hex.DecodeString(f.PublicKey); err != nil {
		return nil, fmt.Errorf("the manifest signature's public_key: %w", err)
	}
	if s.Value, err = hex.DecodeString(f.Signature); err != nil {
		return nil, fmt.Errorf("the manifest signature's signature: %w", err)
	}
	pub, err := x509.ParsePKIXPublicKey(s.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("the manifest signature's public key: %w", err)
	}
	msg := s.message()
	valid := false
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		valid = ed25519.Verify(pub, msg, s.Value)
	case *ecdsa.PublicKey:
		digest := sha256.Sum256(msg)
		valid = pub.Curve == elliptic.P256() && ecdsa.VerifyASN1(pub, digest[:], s.Value)
	default:
		return nil, errUnsupportedKey
	}
	if !valid {
		return nil, errors.New("the manifest signature does not verify: it has been altered")
	}
	return s, nil
}

// Verify reports whether s is the signature of m: the measurement and identity it signs are m's.
func (s *Signature) Verify(m *Manifest) error {
	switch {
	case s.MREnclave != Measure(m):
		return fmt.Errorf("the signature is for measurement %x, and the manifest's is %x (sign it again)", s.MREnclave, Measure(m))
	case s.ISVProdID != m.ISVProdID || s.ISVSVN != m.ISVSVN || s.Debug != m.Debug:
		return errors.New("the signature's isvprodid, isvsvn or debug differ from the manifest's")
	}
	return nil
}

// GenerateKey returns a new Ed25519 signing key, and the same PEM-encoded as PKCS#8 ("PRIVATE
// KEY"), to be kept with mode 0600.
func GenerateKey() (crypto.Signer, []byte, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKey reads a PEM signing key: PKCS#8 ("PRIVATE KEY") Ed25519 or ECDSA P-256, or SEC 1
// ("EC PRIVATE KEY") P-256.
func ParseKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM key found")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		return nil, fmt.Errorf("an RSA key (Gramine's enclave key?): %w", errUnsupportedKey)
	default:
		return nil, fmt.Errorf("a PEM %q: %w", block.Type, errUnsupportedKey)
	}
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		if k.Curve == elliptic.P256() {
			return k, nil
		}
	}
	return nil, errUnsupportedKey
}
