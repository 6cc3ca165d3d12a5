package pf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen feeds arbitrary host files to Open, ReadAt and Decrypt: they must fail cleanly or
// agree with each other, never panic or hang. A version 2 file and its version 1 counterpart
// (toV1) must read alike.
func FuzzOpen(f *testing.F) {
	for _, name := range []string{"ct/ct_0.pf", "ct/ct_4097.pf", "neg/trunc_unaligned_1.pf", "neg/flip_meta_version_1048576.pf"} {
		b, err := os.ReadFile(filepath.Join(vectors, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 3*NodeSize)])
	}
	key := readKey(f, "wrap.key")
	// A whole file with enough data nodes for File.ReadAt to decrypt them in bulk.
	var big memStorage
	if _, err := Encrypt(&big, bytes.NewReader(plaintext(MetaDataSize+12*NodeSize)), key, "big", nil); err != nil {
		f.Fatal(err)
	}
	f.Add(big.b)
	f.Add(toV1(big.b))
	f.Fuzz(func(t *testing.T, host []byte) {
		var out bytes.Buffer
		n, derr := Decrypt(&out, bytes.NewReader(host), int64(len(host)), key, nil)
		if n != int64(out.Len()) {
			t.Fatalf("Decrypt reported %d bytes, wrote %d", n, out.Len())
		}
		if len(host) >= NodeSize && host[8] == 2 {
			var out1 bytes.Buffer
			_, err := Decrypt(&out1, bytes.NewReader(toV1(host)), int64(len(host)), key, nil)
			if fmt.Sprint(err) != fmt.Sprint(derr) || !bytes.Equal(out1.Bytes(), out.Bytes()) {
				t.Fatalf("version 1 (%v) and version 2 (%v) read differently", err, derr)
			}
		}
		file, err := Open(bytes.NewReader(host), int64(len(host)), key, nil)
		if err != nil {
			if derr == nil {
				t.Fatalf("Open failed (%v) where Decrypt succeeded", err)
			}
			return
		}
		got, rerr := io.ReadAll(io.NewSectionReader(file, 0, file.Size()))
		if (rerr == nil) != (derr == nil) || rerr == nil && !bytes.Equal(got, out.Bytes()) {
			t.Fatalf("ReadAt (%v) and Decrypt (%v) disagree", rerr, derr)
		}
	})
}

// FuzzMetadata builds files whose metadata and root MHT node authenticate but hold arbitrary
// contents, as a holder of the key could make them, in either version: sizes, paths and slots
// must be handled.
func FuzzMetadata(f *testing.F) {
	f.Add(make([]byte, encMetaSize), make([]byte, NodeSize), 3, false)
	meta := make([]byte, encMetaSize)
	meta[pathFieldSize] = 0x10 // 4112 bytes: one data node
	f.Add(meta, make([]byte, NodeSize), 2, false)
	f.Add(meta, make([]byte, NodeSize), 2, true)
	f.Fuzz(func(t *testing.T, meta, root []byte, nodes int, v1 bool) {
		if len(meta) < encMetaSize || len(root) < NodeSize || nodes < 1 || nodes > 64 {
			return
		}
		host := make([]byte, nodes*NodeSize)
		var nonce [NonceSize]byte
		copy(host, fileID)
		host[8] = Version
		if v1 {
			host[8] = 1
		}
		mk := metadataKey(&testKey, &nonce)
		buf := make([]byte, encMetaSize+MACSize)
		copy(buf, meta)
		// Make the root MHT node authentic under the key and tag that the metadata names.
		var s slot
		copy(s.key[:], meta[pathFieldSize+8:])
		if nodes > 1 {
			rb := make([]byte, NodeSize+MACSize)
			copy(rb, root)
			s.mac = seal(&s.key, rb, NodeSize)
			copy(host[NodeSize:], rb[:NodeSize])
			copy(buf[pathFieldSize+24:], s.mac[:])
		}
		mac := seal(&mk, buf, encMetaSize)
		copy(host[headerSize(host[8]):], buf[:encMetaSize])
		copy(host[42:], mac[:])
		var out bytes.Buffer
		_, err := Decrypt(&out, bytes.NewReader(host), int64(len(host)), testKey, nil)
		if err == nil {
			return
		}
		for _, want := range []error{ErrKey, ErrTruncated, ErrDamaged} {
			if errors.Is(err, want) {
				return
			}
		}
		t.Fatalf("unexpected error: %v", err)
	})
}

// FuzzFileOps runs random operation sequences, decoded from the input, against a reference.
func FuzzFileOps(f *testing.F) {
	f.Add(uint64(1), uint16(50))
	f.Fuzz(func(t *testing.T, seed uint64, steps uint16) {
		defer func(n int) { cacheNodes = n }(cacheNodes)
		cacheNodes = 2 + int(seed%8)
		randomOps(t, seed, int(steps%200), false)
	})
}

// FuzzReencrypt feeds arbitrary host files to Reencrypt: it fails exactly when Decrypt does, and
// otherwise writes a file that reads, under the new key, as the old one did.
func FuzzReencrypt(f *testing.F) {
	key := readKey(f, "wrap.key")
	for _, name := range []string{"ct/ct_0.pf", "ct/ct_4097.pf", "neg/trunc_unaligned_1.pf"} {
		b, err := os.ReadFile(filepath.Join(vectors, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	var big memStorage
	if _, err := Encrypt(&big, bytes.NewReader(plaintext(MetaDataSize+100*NodeSize)), key, "big", &Options{Version: 1}); err != nil {
		f.Fatal(err)
	}
	f.Add(big.b)
	f.Fuzz(func(t *testing.T, host []byte) {
		var want bytes.Buffer
		_, derr := Decrypt(&want, bytes.NewReader(host), int64(len(host)), key, nil)
		var dst memStorage
		_, err := Reencrypt(&dst, bytes.NewReader(host), int64(len(host)), key, newKey, nil)
		if (err == nil) != (derr == nil) {
			t.Fatalf("Reencrypt (%v) and Decrypt (%v) disagree", err, derr)
		}
		if err != nil {
			return
		}
		var got bytes.Buffer
		if _, err := Decrypt(&got, &dst, dst.size(), newKey, nil); err != nil || !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("the re-encrypted file reads differently (%v)", err)
		}
	})
}
