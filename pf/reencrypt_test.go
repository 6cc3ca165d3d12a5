package pf

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var newKey = Key{16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}

func TestReencrypt(t *testing.T) {
	for _, size := range boundarySizes() {
		if testing.Short() && size > 1<<20 {
			continue
		}
		for _, version := range []uint8{1, 2} {
			t.Run(fmt.Sprintf("%d/v%d", size, version), func(t *testing.T) {
				plain := plaintext(size)
				var src, dst memStorage
				if _, err := Encrypt(&src, bytes.NewReader(plain), testKey, "data/in.bin", &Options{Version: version}); err != nil {
					t.Fatal(err)
				}
				n, err := Reencrypt(&dst, bytes.NewReader(src.b), src.size(), testKey, newKey, nil)
				if err != nil || n != size {
					t.Fatalf("Reencrypt: %d bytes, %v", n, err)
				}
				f, err := Open(&dst, dst.size(), newKey, &Options{CheckPath: true, Path: "data/in.bin"})
				if err != nil {
					t.Fatal(err)
				}
				if f.Header().Major != version {
					t.Fatalf("format %d became %d", version, f.Header().Major)
				}
				var out bytes.Buffer
				if _, err := Decrypt(&out, &dst, dst.size(), newKey, nil); err != nil || !bytes.Equal(out.Bytes(), plain) {
					t.Fatalf("the re-encrypted file reads back differently (%v)", err)
				}
				if _, err := Open(&dst, dst.size(), testKey, nil); !errors.Is(err, ErrKey) {
					t.Fatalf("the old key still opens the re-encrypted file: %v", err)
				}
			})
		}
	}
}

func TestReencryptFormat(t *testing.T) {
	src := encryptBytes(t, plaintext(5000), "p")
	var dst memStorage
	if _, err := Reencrypt(&dst, src, src.size(), testKey, newKey, &Options{Version: 1}); err != nil {
		t.Fatal(err)
	}
	info, err := Inspect(&dst, dst.size())
	if err != nil || info.Major != 1 {
		t.Fatalf("--format 1 wrote version %d (%v)", info.Major, err)
	}
	if _, err := Reencrypt(&dst, src, src.size(), testKey, newKey, &Options{Version: 3}); !errors.Is(err, ErrVersion) {
		t.Fatalf("version 3: %v", err)
	}
}

// TestReencryptGramine re-encrypts a file that Gramine's own tool wrote.
func TestReencryptGramine(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(vectors, "ct/ct_1048576.pf"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(vectors, "pt/pt_1048576.bin"))
	if err != nil {
		t.Fatal(err)
	}
	var dst memStorage
	if _, err := Reencrypt(&dst, bytes.NewReader(b), int64(len(b)), readKey(t, "wrap.key"), newKey, nil); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := Decrypt(&out, &dst, dst.size(), newKey, &Options{CheckPath: true, Path: "ct_1048576.pf"}); err != nil || !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("re-encrypted Gramine file: %v", err)
	}
}

func TestReencryptErrors(t *testing.T) {
	src := encryptBytes(t, plaintext(MetaDataSize+200*NodeSize), "p")
	dst := memStorage{b: []byte("untouched")}
	if _, err := Reencrypt(&dst, src, src.size(), newKey, testKey, nil); !errors.Is(err, ErrKey) {
		t.Fatalf("wrong old key: %v", err)
	}
	if string(dst.b) != "untouched" {
		t.Fatal("a wrong old key touched the output")
	}
	// A damaged data node far into the file: the error is the damage, not a broken pipe.
	src.b[dataOffset(150)+10] ^= 1
	_, err := Reencrypt(&dst, src, src.size(), testKey, newKey, nil)
	var ne *NodeError
	if !errors.As(err, &ne) || !errors.Is(err, ErrDamaged) || ne.Index != 150 {
		t.Fatalf("damaged node: %v", err)
	}
	// A failing output stops the decryption too.
	src.b[dataOffset(150)+10] ^= 1
	boom := errors.New("disk full")
	if _, err := Reencrypt(failingStorage{boom}, src, src.size(), testKey, newKey, nil); !errors.Is(err, boom) {
		t.Fatalf("failing output: %v", err)
	}
}

type failingStorage struct{ err error }

func (s failingStorage) ReadAt([]byte, int64) (int, error)  { return 0, s.err }
func (s failingStorage) WriteAt([]byte, int64) (int, error) { return 0, s.err }
func (s failingStorage) Truncate(int64) error               { return nil }
