package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// A sealer encrypts keys at rest: AES-256-GCM under the master key with a random 96-bit
// nonce. A sealed key is nonce ‖ ciphertext ‖ tag (12 + 16 + 16 bytes) and its additional
// data binds the key's name and version, so a record moved to another name or version fails
// to open. Backends store sealed keys and the check value, never key bytes.
type sealer struct {
	aead   cipher.AEAD
	refKey []byte // HMAC-SHA256 key of the audit references, derived from the master key
}

// Additional data: a purpose label, then, for keys, the name's length, the name and the version.
const (
	keyLabel   = "ppml store key v1\x00"
	checkLabel = "ppml store master key check v1\x00"
	refLabel   = "ppml store audit reference v1\x00"
)

func newSealer(masterKey []byte) (*sealer, error) {
	block, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	ref := hmac.New(sha256.New, masterKey)
	ref.Write([]byte(refLabel))
	return &sealer{aead: aead, refKey: ref.Sum(nil)}, nil
}

// auditRef returns the reference of audit record id: 12 hex digits of a MAC of the ID under a
// key derived from the master key.
func (s *sealer) auditRef(id int64) string {
	mac := hmac.New(sha256.New, s.refKey)
	mac.Write(binary.BigEndian.AppendUint64(nil, uint64(id)))
	return hex.EncodeToString(mac.Sum(nil)[:6])
}

func keyAD(name string, version int) []byte {
	ad := make([]byte, 0, len(keyLabel)+4+len(name)+8)
	ad = append(ad, keyLabel...)
	ad = binary.BigEndian.AppendUint32(ad, uint32(len(name)))
	ad = append(ad, name...)
	return binary.BigEndian.AppendUint64(ad, uint64(version))
}

// seal encrypts version version of key name.
func (s *sealer) seal(name string, version int, key []byte) []byte {
	return s.aead.Seal(nil, nil, key, keyAD(name, version))
}

// open decrypts what seal made for the same name and version.
func (s *sealer) open(name string, version int, sealed []byte) ([]byte, error) {
	key, err := s.aead.Open(nil, nil, sealed, keyAD(name, version))
	if err != nil {
		return nil, fmt.Errorf("key %q version %d: %w", name, version, ErrTampered)
	}
	return key, nil
}

// checkValue is stored when a store is created; only the same master key opens it.
func (s *sealer) checkValue() []byte {
	return s.aead.Seal(nil, nil, []byte(checkLabel), []byte(checkLabel))
}

// verify reports whether check was made by checkValue under this master key.
func (s *sealer) verify(check []byte) error {
	if _, err := s.aead.Open(nil, nil, check, []byte(checkLabel)); err != nil {
		return ErrWrongMasterKey
	}
	return nil
}
