package pf

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// toV1 returns the version 1 file whose migration by Gramine v1.9 (gramine-compat.md §1.6: move
// the encrypted part from offset 58 to 59, flags 0) gives the version 2 file host.
func toV1(host []byte) []byte {
	v1 := bytes.Clone(host)
	v1[8] = 1
	copy(v1[headerSizeV1:], host[headerSizeV2:headerSizeV2+encMetaSize])
	clear(v1[headerSizeV1+encMetaSize : NodeSize])
	return v1
}

// encryptSeeded encrypts plain bound to path in format version, drawing keys and nonces from a
// generator seeded with seed.
func encryptSeeded(t testing.TB, plain []byte, path string, version uint8, seed uint64) []byte {
	t.Helper()
	var s memStorage
	opts := &Options{Version: version, Rand: rand.NewChaCha8([32]byte{byte(seed)})}
	n, err := Encrypt(&s, bytes.NewReader(plain), testKey, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.size(), HostSize(n); n != int64(len(plain)) || got != want {
		t.Fatalf("Encrypt wrote %d bytes of plaintext in %d host bytes; want %d in %d", n, got, len(plain), want)
	}
	return s.b
}

// TestVersion1Layout writes version 1 at every node boundary and checks its bytes against the
// format (gramine-compat.md §1.3): the header, the metadata decrypted at offset 58 by the KDF and
// GCM alone, the zero padding, and that it is exactly what Gramine v1.9 migrates to the version 2
// file written with the same keys. Then it reads it back.
func TestVersion1Layout(t *testing.T) {
	sizes := []int64{0, 1, 3072, 3073, 4095, 4096, 4097, 1 << 20,
		MetaDataSize + (dataPerMHT+childrenPerMHT*dataPerMHT+1)*NodeSize} // three levels of MHT nodes
	for i, size := range sizes {
		if testing.Short() && size > 1<<20 {
			continue
		}
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			plain := plaintext(size)
			const path = "enc/v1.pf"
			v1 := encryptSeeded(t, plain, path, 1, uint64(i))
			v2 := encryptSeeded(t, plain, path, 2, uint64(i))

			if string(v1[:8]) != "GRAFS_PF" || v1[8] != 1 || v1[9] != 0 {
				t.Fatalf("header starts %x, want GRAFS_PF, 01, 00", v1[:10])
			}
			mk := metadataKey(&testKey, (*[NonceSize]byte)(v1[10:42]))
			gcm, err := cipher.NewGCM(must(aes.NewCipher(mk[:])))
			if err != nil {
				t.Fatal(err)
			}
			sealed := append(bytes.Clone(v1[58:58+3884]), v1[42:58]...)
			meta, err := gcm.Open(nil, make([]byte, 12), sealed, nil)
			if err != nil {
				t.Fatalf("the encrypted part at offset 58 does not authenticate under the tag at 42: %v", err)
			}
			if got := string(meta[:772]); got != path+string(make([]byte, 772-len(path))) {
				t.Errorf("path field %q", bytes.TrimRight(meta[:772], "\x00"))
			}
			if got := binary.LittleEndian.Uint64(meta[772:]); got != uint64(size) {
				t.Errorf("file size field %d, want %d", got, size)
			}
			if n := min(size, MetaDataSize); !bytes.Equal(meta[812:812+n], plain[:n]) {
				t.Error("the metadata's file data is not the plaintext's start")
			}
			if !bytes.Equal(v1[3942:NodeSize], make([]byte, NodeSize-3942)) {
				t.Error("padding 3942..4095 is not zero")
			}
			if v2[8] != 2 || v2[58] != 0 {
				t.Fatalf("version 2 file: version %d, flags %#x", v2[8], v2[58])
			}
			if !bytes.Equal(v1, toV1(v2)) {
				t.Fatal("the version 1 file is not the version 2 file with its encrypted part at 58")
			}

			var out bytes.Buffer
			if _, err := Decrypt(&out, bytes.NewReader(v1), int64(len(v1)), testKey, &Options{CheckPath: true, Path: path}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), plain) {
				t.Fatal("Decrypt differs")
			}
			info, err := Inspect(bytes.NewReader(v1), int64(len(v1)))
			if err != nil || info.Major != 1 || info.Flags != 0 {
				t.Fatalf("Inspect: %+v, %v", info.Header, err)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestVersionConversion converts between the versions with Open and Options.Version: a file that
// is only read keeps its version, and the first flush that writes writes Options.Version, by
// default 2, as Gramine v1.9 does.
func TestVersionConversion(t *testing.T) {
	plain := plaintext(MetaDataSize + 100*NodeSize + 7)
	for _, c := range []struct{ from, to, want uint8 }{{1, 0, 2}, {1, 1, 1}, {2, 1, 1}, {2, 2, 2}} {
		t.Run(fmt.Sprintf("%d to %d", c.from, c.to), func(t *testing.T) {
			s := &memStorage{b: encryptSeeded(t, plain, "conv", c.from, 1)}
			before := bytes.Clone(s.b)
			opts := &Options{Version: c.to}
			f, err := Open(s, s.size(), testKey, opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.ReadAt(make([]byte, len(plain)), 0); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(s.b, before) {
				t.Fatal("reading changed the file")
			}
			if f, err = Open(s, s.size(), testKey, opts); err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(plain[5000:5001], 5000); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if s.b[8] != c.want {
				t.Fatalf("major version %d after a write, want %d", s.b[8], c.want)
			}
			var out bytes.Buffer
			if _, err := Decrypt(&out, s, s.size(), testKey, nil); err != nil || !bytes.Equal(out.Bytes(), plain) {
				t.Fatalf("after the write: %v", err)
			}
		})
	}
}

func TestUnknownWriteVersion(t *testing.T) {
	var s memStorage
	opts := &Options{Version: 3}
	if _, err := Create(&s, testKey, "x", opts); !errors.Is(err, ErrVersion) {
		t.Errorf("Create: %v", err)
	}
	if _, err := Encrypt(&s, bytes.NewReader(nil), testKey, "x", opts); !errors.Is(err, ErrVersion) {
		t.Errorf("Encrypt: %v", err)
	}
	s.b = encryptSeeded(t, nil, "x", 2, 0)
	if _, err := Open(&s, s.size(), testKey, opts); !errors.Is(err, ErrVersion) {
		t.Errorf("Open: %v", err)
	}
}

// TestGramineVectorsToVersion1 re-encrypts the plaintext of Gramine v1.9's vectors in version 1,
// bound to the same path: the files have the vectors' sizes and read back identical. The vectors
// themselves, moved to version 1 as toV1 does, read the same too.
func TestGramineVectorsToVersion1(t *testing.T) {
	key := readKey(t, "wrap.key")
	for _, tc := range gramineGood {
		t.Run(tc.file, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(vectors, tc.plain))
			if err != nil {
				t.Fatal(err)
			}
			vector, err := os.ReadFile(filepath.Join(vectors, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			check := func(what string, host []byte) {
				t.Helper()
				var out bytes.Buffer
				if _, err := Decrypt(&out, bytes.NewReader(host), int64(len(host)), key, &Options{CheckPath: true, Path: tc.path}); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if !bytes.Equal(out.Bytes(), want) {
					t.Fatalf("%s: plaintext differs", what)
				}
			}
			plain, err := decryptFile(t, tc.file, key, &Options{CheckPath: true, Path: tc.path})
			if err != nil {
				t.Fatal(err)
			}
			var s memStorage
			if _, err := Encrypt(&s, bytes.NewReader(plain), key, tc.path, &Options{Version: 1}); err != nil {
				t.Fatal(err)
			}
			if s.b[8] != 1 || len(s.b) != len(vector) {
				t.Fatalf("version %d, %d bytes; want 1, %d bytes", s.b[8], len(s.b), len(vector))
			}
			check("re-encrypted in version 1", s.b)
			check("the vector moved to version 1", toV1(vector))
		})
	}
}
