package pf

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
)

// kdfLabel is the label of the metadata key derivation.
const kdfLabel = "SGX-PROTECTED-FS-METADATA-KEY"

// zeroIV is the GCM nonce of every encryption: safe because every key encrypts exactly once.
var zeroIV [12]byte

// metadataKey derives the key of the encrypted metadata from the key derivation key and the
// header's nonce: NIST SP 800-108 counter mode, one round, with AES-128-CMAC as the PRF.
func metadataKey(kdk *Key, nonce *[NonceSize]byte) Key {
	var in [4 + 64 + NonceSize + 4]byte
	binary.LittleEndian.PutUint32(in[0:], 1)
	copy(in[4:], kdfLabel)
	copy(in[68:], nonce[:])
	binary.LittleEndian.PutUint32(in[100:], 8*KeySize)
	return cmac(kdk, in[:])
}

// cmac computes AES-128-CMAC (RFC 4493) of msg under key.
func cmac(key *Key, msg []byte) Key {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // a 16-byte key is always valid
	}
	var k1, k2, x Key
	block.Encrypt(k1[:], k1[:])
	k1 = cmacDouble(k1)
	k2 = cmacDouble(k1)

	n := (len(msg) + aes.BlockSize - 1) / aes.BlockSize
	complete := n > 0 && len(msg)%aes.BlockSize == 0
	if n == 0 {
		n = 1
	}
	for i := 0; i < n-1; i++ {
		subtle.XORBytes(x[:], x[:], msg[i*aes.BlockSize:])
		block.Encrypt(x[:], x[:])
	}
	var last Key
	tail := msg[(n-1)*aes.BlockSize:]
	copy(last[:], tail)
	if complete {
		subtle.XORBytes(last[:], last[:], k1[:])
	} else {
		last[len(tail)] = 0x80
		subtle.XORBytes(last[:], last[:], k2[:])
	}
	subtle.XORBytes(x[:], x[:], last[:])
	block.Encrypt(x[:], x[:])
	return x
}

// cmacDouble multiplies b by x in GF(2^128), the subkey step of CMAC.
func cmacDouble(b Key) Key {
	var out Key
	carry := b[0] >> 7
	for i := 0; i < len(b)-1; i++ {
		out[i] = b[i]<<1 | b[i+1]>>7
	}
	out[len(b)-1] = b[len(b)-1]<<1 ^ 0x87*carry
	return out
}

func newGCM(key *Key) cipher.AEAD {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return gcm
}

// seal encrypts buf[:n] in place under key and returns the tag. buf must have room for n+16 bytes.
func seal(key *Key, buf []byte, n int) [MACSize]byte {
	out := newGCM(key).Seal(buf[:0], zeroIV[:], buf[:n], nil)
	var mac [MACSize]byte
	copy(mac[:], out[n:])
	return mac
}

// open decrypts buf[:n] in place under key, checking mac. buf must have room for n+16 bytes.
// It reports whether the tag matched; on a mismatch buf[:n] holds garbage.
func open(key *Key, mac *[MACSize]byte, buf []byte, n int) bool {
	copy(buf[n:n+MACSize], mac[:])
	_, err := newGCM(key).Open(buf[:0], zeroIV[:], buf[:n+MACSize], nil)
	return err == nil
}
