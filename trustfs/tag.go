package trustfs

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
)

// A tag is what a mount keeps of a checked chunk to verify it again when it reads it from the
// host: a GMAC (AES-256-GCM with the chunk as its additional data and no plaintext) under a key
// of the mount's own, drawn at random when it is mounted, with the file and the chunk's index as
// the nonce. GMAC runs several times faster than SHA-256 (AES-NI and carry-less
// multiplication), so that a read verifies its chunks for little more than the copy. Neither
// the key nor a tag leaves the process: a host that swaps a chunk for other bytes must find,
// blind, bytes with the same tag, which succeeds with a probability under 2⁻¹¹⁰ (GHASH over at
// most 2¹⁶+2 blocks of 16 bytes is 2⁻¹¹¹-almost-XOR-universal).
type tag [16]byte

// tagger makes the tags of a mount.
type tagger struct{ gcm cipher.AEAD }

// newTagger returns a tagger with a key of its own.
func newTagger() (*tagger, error) {
	key := make([]byte, 32)
	rand.Read(key) // never fails (crypto/rand)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &tagger{gcm}, nil
}

// tag returns the tag of chunk i, b, of the trusted file numbered file.
func (t *tagger) tag(file uint64, i int64, b []byte) tag {
	var nonce [12]byte
	binary.LittleEndian.PutUint64(nonce[:], file)
	binary.LittleEndian.PutUint32(nonce[8:], uint32(i))
	var out tag
	t.gcm.Seal(out[:0], nonce[:], nil, b)
	return out
}
