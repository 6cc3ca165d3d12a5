package pf

import (
	"bytes"
	"io"
	"testing"
)

const benchSize = 64 << 20

func BenchmarkEncrypt(b *testing.B) {
	plain := plaintext(benchSize)
	s := memStorage{b: make([]byte, 0, HostSize(benchSize))}
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := Encrypt(&s, bytes.NewReader(plain), testKey, "bench", nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecrypt(b *testing.B) {
	s := encryptBytes(b, plaintext(benchSize), "bench")
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := Decrypt(io.Discard, s, s.size(), testKey, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReencrypt is pf rekey's work on one file: its yardstick is BenchmarkDecrypt plus
// BenchmarkEncrypt, which it does at once.
func BenchmarkReencrypt(b *testing.B) {
	src := encryptBytes(b, plaintext(benchSize), "bench")
	dst := memStorage{b: make([]byte, 0, HostSize(benchSize))}
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := Reencrypt(&dst, src, src.size(), testKey, newKey, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFileWriteAt writes a file sequentially in 128 KiB pieces, as a FUSE server does.
func BenchmarkFileWriteAt(b *testing.B) {
	plain := plaintext(benchSize)
	b.SetBytes(benchSize)
	s := memStorage{b: make([]byte, 0, HostSize(benchSize))}
	for b.Loop() {
		f, err := Create(&s, testKey, "bench", nil)
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < benchSize; off += 128 << 10 {
			if _, err := f.WriteAt(plain[off:off+128<<10], int64(off)); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFileReadAt reads a file sequentially in 128 KiB pieces, as a FUSE server does.
func BenchmarkFileReadAt(b *testing.B) {
	s := encryptBytes(b, plaintext(benchSize), "bench")
	buf := make([]byte, 128<<10)
	b.SetBytes(benchSize)
	for b.Loop() {
		f, err := Open(s, s.size(), testKey, nil)
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < benchSize; off += int64(len(buf)) {
			if _, err := f.ReadAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
		f.Close()
	}
}
