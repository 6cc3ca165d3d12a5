package pf

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCMAC checks the AES-128 examples of RFC 4493, section 4.
func TestCMAC(t *testing.T) {
	var key Key
	copy(key[:], unhex(t, "2b7e151628aed2a6abf7158809cf4f3c"))
	msg := unhex(t, "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"+
		"30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
	for _, tc := range []struct {
		n   int
		mac string
	}{
		{0, "bb1d6929e95937287fa37d129b756746"},
		{16, "070a16b46b4d4144f79bdd9dd04a287c"},
		{40, "dfa66747de9ae63030ca32611497c827"},
		{64, "51f0bebf7e3b9d92fc49741779363cfe"},
	} {
		if got := cmac(&key, msg[:tc.n]); hex.EncodeToString(got[:]) != tc.mac {
			t.Errorf("CMAC of %d bytes = %x, want %s", tc.n, got, tc.mac)
		}
	}
}

// counting returns the bytes 00 01 02 ... of length n.
func counting(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// TestKDFVector reproduces the metadata key derivation of gramine-compat.md §1.9.
func TestKDFVector(t *testing.T) {
	var kdk Key
	var nonce [NonceSize]byte
	copy(kdk[:], counting(16))
	copy(nonce[:], counting(32))
	if got := metadataKey(&kdk, &nonce); hex.EncodeToString(got[:]) != "7e3e7a45536f547642ad61473eba1173" {
		t.Fatalf("metadata key = %x", got)
	}
}

// TestWholeFileVector reproduces the whole-file vector of gramine-compat.md §1.9, made by
// Gramine's C code: "hello\n" bound to result.txt, with the nonce 00..1f.
func TestWholeFileVector(t *testing.T) {
	var kdk Key
	copy(kdk[:], counting(16))
	var s memStorage
	f, err := Create(&s, kdk, "result.txt", &Options{Rand: bytes.NewReader(counting(32))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("hello\n"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if len(s.b) != NodeSize {
		t.Fatalf("file is %d bytes, want 4096", len(s.b))
	}
	if sum := sha256.Sum256(s.b); hex.EncodeToString(sum[:]) != "811f9b6a40d2bd0e366a4d45feae5108bd72d159b3583f7b779695c8d1192680" {
		t.Errorf("SHA-256 = %x", sum)
	}
	if want := append([]byte("GRAFS_PF\x02\x00"), counting(32)...); !bytes.Equal(s.b[:42], want) {
		t.Errorf("header = %x", s.b[:42])
	}
	if mac := hex.EncodeToString(s.b[42:58]); mac != "25d800f34678247f7bc10a64748c1a1d" {
		t.Errorf("metadata MAC = %s", mac)
	}
}
