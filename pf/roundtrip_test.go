package pf

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// plaintext returns n bytes in which no two 4 KiB blocks are alike.
func plaintext(n int64) []byte {
	b := make([]byte, 0, n+32)
	var ctr [8]byte
	for i := uint64(0); int64(len(b)) < n; i++ {
		binary.LittleEndian.PutUint64(ctr[:], i)
		sum := sha256.Sum256(append([]byte("pfvec"), ctr[:]...))
		b = append(b, sum[:]...)
	}
	return b[:n]
}

var testKey = Key{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

// boundarySizes are the plaintext sizes around every layout boundary.
func boundarySizes() []int64 {
	sizes := []int64{0, 1, 3071, 3072, 3073, 4095, 4096, 4097, 7168, 7169}
	for _, d := range []int64{96, 96 + 32*96} { // one and two levels of MHT nodes are full
		end := MetaDataSize + d*NodeSize
		sizes = append(sizes, end-1, end, end+1)
	}
	return append(sizes, 21<<20+12345) // three levels
}

func encryptBytes(t testing.TB, plain []byte, path string) *memStorage {
	t.Helper()
	var s memStorage
	n, err := Encrypt(&s, bytes.NewReader(plain), testKey, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(plain)) {
		t.Fatalf("Encrypt reported %d bytes, want %d", n, len(plain))
	}
	if got, want := s.size(), HostSize(n); got != want {
		t.Fatalf("host file is %d bytes, want %d", got, want)
	}
	return &s
}

func TestRoundTripBoundaries(t *testing.T) {
	for _, size := range boundarySizes() {
		if testing.Short() && size > 1<<20 {
			continue
		}
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			plain := plaintext(size)
			// Bulk encrypt, then bulk decrypt and random-access read.
			s := encryptBytes(t, plain, "a/b.pf")
			var out bytes.Buffer
			if _, err := Decrypt(&out, s, s.size(), testKey, &Options{CheckPath: true, Path: "a/b.pf"}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), plain) {
				t.Fatal("Decrypt differs")
			}
			f, err := Open(s, s.size(), testKey, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, size)
			if _, err := f.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, plain) {
				t.Fatal("ReadAt differs")
			}
			// Random-access write in uneven chunks, then bulk decrypt.
			var s2 memStorage
			w, err := Create(&s2, testKey, "c.pf", nil)
			if err != nil {
				t.Fatal(err)
			}
			for off := int64(0); off < size; off += 10007 {
				if _, err := w.WriteAt(plain[off:min(size, off+10007)], off); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got, want := s2.size(), HostSize(size); got != want {
				t.Fatalf("host file is %d bytes, want %d", got, want)
			}
			out.Reset()
			if _, err := Decrypt(&out, &s2, s2.size(), testKey, nil); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), plain) {
				t.Fatal("file written by WriteAt decrypts differently")
			}
		})
	}
}

// TestRandomOps checks random sequences of ReadAt, WriteAt, Truncate, Flush and reopening
// against an in-memory reference, with a small cache so that eviction happens all the time.
func TestRandomOps(t *testing.T) {
	for _, c := range []struct {
		cache    int
		eachStep bool // flush and check the whole file after each step
		seeds    uint64
	}{
		{3, true, 6},
		// A cache this small fills with changed nodes between flushes, so that bulk reads
		// flush on the way, when they load MHT nodes.
		{5, false, 30},
		{256, false, 6},
	} {
		t.Run(fmt.Sprint("cache", c.cache), func(t *testing.T) {
			defer func(n int) { cacheNodes = n }(cacheNodes)
			cacheNodes = c.cache
			seeds := c.seeds
			if testing.Short() {
				seeds = 2
			}
			for seed := range seeds {
				randomOps(t, seed, 200, c.eachStep)
			}
		})
	}
}

// randomOps runs steps random operations, in format version 1 for odd seeds and 2 for even ones;
// with checkEachStep it flushes and decrypts the whole file after each one.
func randomOps(t testing.TB, seed uint64, steps int, checkEachStep bool) {
	rng := rand.New(rand.NewPCG(seed, 1))
	var s memStorage
	version := uint8(2 - seed%2)
	f, err := Create(&s, testKey, "ops", &Options{Version: version})
	if err != nil {
		t.Fatal(err)
	}
	var ref []byte
	maxSize := int64(1 << (12 + rng.IntN(10))) // 4 KiB to 2 MiB
	for step := range steps {
		off := rng.Int64N(maxSize)
		n := rng.Int64N(3 * NodeSize)
		switch op := rng.IntN(10); {
		case op < 4:
			p := plaintext(n + int64(step))[step:]
			if _, err := f.WriteAt(p, off); err != nil {
				t.Fatalf("seed %d step %d: WriteAt(%d, %d): %v", seed, step, len(p), off, err)
			}
			if end := off + int64(len(p)); end > int64(len(ref)) {
				ref = append(ref, make([]byte, end-int64(len(ref)))...)
			}
			copy(ref[off:], p)
		case op < 7:
			if rng.IntN(2) == 0 { // whole nodes, which ReadAt decrypts in bulk
				off = MetaDataSize + rng.Int64N(maxSize/NodeSize+1)*NodeSize
				n = rng.Int64N(64 * NodeSize)
			}
			got := make([]byte, n)
			m, err := f.ReadAt(got, off)
			want := int(max(0, min(int64(len(ref))-off, n)))
			if m != want || (m < len(got) && err != io.EOF) || (m == len(got) && err != nil) {
				t.Fatalf("seed %d step %d: ReadAt(%d, %d) = %d, %v; want %d", seed, step, n, off, m, err, want)
			}
			if m > 0 && !bytes.Equal(got[:m], ref[off:off+int64(m)]) {
				t.Fatalf("seed %d step %d: ReadAt(%d, %d) returned other bytes", seed, step, n, off)
			}
		case op < 8:
			size := rng.Int64N(maxSize)
			if err := f.Truncate(size); err != nil {
				t.Fatal(err)
			}
			if size <= int64(len(ref)) {
				ref = ref[:size]
			} else {
				ref = append(ref, make([]byte, size-int64(len(ref)))...)
			}
		case op < 9:
			if err := f.Flush(); err != nil {
				t.Fatal(err)
			}
		default:
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if got, want := s.size(), HostSize(int64(len(ref))); got != want {
				t.Fatalf("seed %d step %d: host file is %d bytes, want %d", seed, step, got, want)
			}
			if s.b[8] != version {
				t.Fatalf("seed %d step %d: version %d, want %d", seed, step, s.b[8], version)
			}
			if f, err = Open(&s, s.size(), testKey, &Options{CheckPath: true, Path: "ops", Version: version}); err != nil {
				t.Fatalf("seed %d step %d: reopen: %v", seed, step, err)
			}
		}
		if checkEachStep {
			if err := f.Flush(); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if _, err := Decrypt(&out, &s, s.size(), testKey, nil); err != nil || !bytes.Equal(out.Bytes(), ref) {
				t.Fatalf("seed %d step %d: after op: %v", seed, step, err)
			}
		}
		if f.Size() != int64(len(ref)) {
			t.Fatalf("seed %d step %d: size %d, want %d", seed, step, f.Size(), len(ref))
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := Decrypt(&out, &s, s.size(), testKey, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), ref) {
		t.Fatalf("seed %d: final file differs from the reference", seed)
	}
}

// TestVersion1 reads a file in the format of Gramine v1.0 to v1.8 (a 58-byte header, no feature
// flags) and checks that writing to it upgrades it to version 2.
func TestVersion1(t *testing.T) {
	plain := plaintext(5000)
	s := encryptBytes(t, plain, "v1")
	s.b = toV1(s.b)
	f, err := Open(s, s.size(), testKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Header().Major != 1 {
		t.Fatalf("major version %d, want 1", f.Header().Major)
	}
	got := make([]byte, len(plain))
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("ReadAt: %v", err)
	}
	if _, err := f.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if s.b[8] != 2 {
		t.Fatalf("major version %d after a write, want 2", s.b[8])
	}
	plain[0] = 'x'
	var out bytes.Buffer
	if _, err := Decrypt(&out, s, s.size(), testKey, nil); err != nil || !bytes.Equal(out.Bytes(), plain) {
		t.Fatalf("after upgrade: %v", err)
	}
}

func TestReadOnlyAndClosed(t *testing.T) {
	s := encryptBytes(t, plaintext(100), "ro")
	f, err := Open(bytes.NewReader(s.b), s.size(), testKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, ErrReadOnly) {
		t.Errorf("WriteAt on a read-only file: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Close: %v", err)
	}
}

func TestCreateRejectsLongPath(t *testing.T) {
	var s memStorage
	if _, err := Create(&s, testKey, string(bytes.Repeat([]byte("a"), MaxPathLen+1)), nil); err == nil {
		t.Error("a 772-byte path was accepted")
	}
	if _, err := Create(&s, testKey, string(bytes.Repeat([]byte("a"), MaxPathLen)), nil); err != nil {
		t.Error(err)
	}
}

func TestSizeRange(t *testing.T) {
	for size := int64(0); size < 400*NodeSize; size += 1021 {
		lo, hi := sizeRange(HostSize(size) / NodeSize)
		if size < lo || size > hi || HostSize(lo) != HostSize(size) || HostSize(hi) != HostSize(size) {
			t.Fatalf("size %d: range [%d, %d]", size, lo, hi)
		}
	}
}

func TestWriteAtOutOfRange(t *testing.T) {
	var s memStorage
	f, err := Create(&s, testKey, "big", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{-1, maxFileSize, 1<<63 - 5} {
		if _, err := f.WriteAt(make([]byte, 10), off); err == nil {
			t.Errorf("WriteAt at %d: no error", off)
		}
	}
	if err := f.SetPath("a\x00b"); err == nil {
		t.Error("SetPath accepted a NUL byte")
	}
}
