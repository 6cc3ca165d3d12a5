package pf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"testing"
)

// TestDecryptRange checks DecryptRange against the plaintext for ranges that start and end at
// and around node, group and file boundaries, and at random.
func TestDecryptRange(t *testing.T) {
	for _, size := range []int64{0, 100, MetaDataSize, MetaDataSize + 1, MetaDataSize + 5*NodeSize + 7,
		MetaDataSize + 3*groupBytes, MetaDataSize + 3*groupBytes + 1, 2<<20 + 12345} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			plain := plaintext(size)
			s := encryptBytes(t, plain, "r")
			points := []int64{0, 1, MetaDataSize - 1, MetaDataSize, MetaDataSize + 1,
				MetaDataSize + NodeSize, MetaDataSize + groupBytes - 1, MetaDataSize + groupBytes,
				MetaDataSize + 2*groupBytes + 5, size - NodeSize, size - 1, size, size + 1}
			r := rand.New(rand.NewPCG(uint64(size), 1))
			for range 20 {
				points = append(points, r.Int64N(size+2))
			}
			for _, off := range points {
				if off < 0 {
					continue
				}
				for _, n := range []int64{0, 1, NodeSize, groupBytes + 3, r.Int64N(3 * groupBytes), size, math.MaxInt64} {
					var out bytes.Buffer
					got, err := DecryptRange(&out, s, s.size(), testKey, off, n, nil)
					if err != nil {
						t.Fatalf("DecryptRange(%d, %d): %v", off, n, err)
					}
					want := plain[min(off, size):]
					want = want[:min(int64(len(want)), n)]
					if got != int64(out.Len()) || !bytes.Equal(out.Bytes(), want) {
						t.Fatalf("DecryptRange(%d, %d) wrote %d bytes (reported %d), want the %d of the plaintext",
							off, n, out.Len(), got, len(want))
					}
				}
			}
		})
	}
	if _, err := DecryptRange(io.Discard, encryptBytes(t, nil, "r"), HostSize(0), testKey, -1, 1, nil); err == nil {
		t.Error("DecryptRange at -1 succeeded")
	}
}

// TestDecryptRangeDamaged damages one data node and checks that DecryptRange fails on ranges
// that hold it, after writing only the plaintext before it, and succeeds on those that do not.
func TestDecryptRangeDamaged(t *testing.T) {
	size := int64(MetaDataSize + 3*groupBytes + 1000) // the last node is partial
	plain := plaintext(size)
	for _, bad := range []int64{0, 95, 96, 150, dataNodes(size) - 1} {
		s := encryptBytes(t, plain, "r")
		s.b[dataOffset(bad)+100] ^= 1
		start := MetaDataSize + bad*NodeSize // plaintext offset of the damaged node
		for _, c := range []struct{ off, n int64 }{
			{0, math.MaxInt64}, {start - 5000, 6000}, {start, 1}, {start + NodeSize - 1, 10},
			{start - groupBytes, groupBytes + 1}, {0, start}, {start + NodeSize, math.MaxInt64},
			{start - 1, 1},
		} {
			if c.off < 0 || c.off >= size {
				continue
			}
			holds := c.off < start+NodeSize && c.off+c.n > start
			var out bytes.Buffer
			got, err := DecryptRange(&out, s, s.size(), testKey, c.off, c.n, nil)
			var ne *NodeError
			if holds {
				if !errors.As(err, &ne) || !errors.Is(err, ErrDamaged) || ne.Index != bad {
					t.Fatalf("node %d damaged: DecryptRange(%d, %d) = %v, want ErrDamaged at node %d", bad, c.off, c.n, err, bad)
				}
			} else if err != nil {
				t.Fatalf("node %d damaged: DecryptRange(%d, %d) = %v", bad, c.off, c.n, err)
			}
			if got != int64(out.Len()) || !bytes.Equal(out.Bytes(), plain[c.off:c.off+int64(out.Len())]) {
				t.Fatalf("node %d damaged: DecryptRange(%d, %d) wrote %d bytes, not the plaintext's", bad, c.off, c.n, out.Len())
			}
			if holds && int64(out.Len()) > max(0, start-c.off) {
				t.Fatalf("node %d damaged: DecryptRange(%d, %d) wrote past the damaged node's start", bad, c.off, c.n)
			}
			// File.ReadAt fails the same way, whether it reads node by node or in bulk.
			f, err := Open(s, s.size(), testKey, nil)
			if err != nil {
				t.Fatal(err)
			}
			p := make([]byte, min(c.n, size-c.off))
			got2, err := f.ReadAt(p, c.off)
			if holds != (err != nil) || holds && (!errors.As(err, &ne) || !errors.Is(err, ErrDamaged) || ne.Index != bad) {
				t.Fatalf("node %d damaged: ReadAt(%d bytes at %d) = %v", bad, len(p), c.off, err)
			}
			// It returns every byte before the damaged node.
			if !bytes.Equal(p[:got2], plain[c.off:c.off+int64(got2)]) || holds && int64(got2) != max(0, start-c.off) {
				t.Fatalf("node %d damaged: ReadAt(%d bytes at %d) returned %d bytes, want the %d before the node", bad, len(p), c.off, got2, max(0, start-c.off))
			}
		}
	}
	// A truncated host file fails at its end.
	s := encryptBytes(t, plain, "r")
	short := &memStorage{b: s.b[:len(s.b)-NodeSize]}
	if _, err := DecryptRange(io.Discard, short, s.size(), testKey, size-10, 10, nil); !errors.Is(err, ErrTruncated) {
		t.Errorf("truncated: DecryptRange of the tail = %v, want ErrTruncated", err)
	}
	f, err := Open(short, s.size(), testKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, size-MetaDataSize)
	got, err := f.ReadAt(p, MetaDataSize)
	if last := int(dataNodes(size) - 1); !errors.Is(err, ErrTruncated) || got != last*NodeSize || !bytes.Equal(p[:got], plain[MetaDataSize:MetaDataSize+got]) {
		t.Errorf("truncated: ReadAt of every data node = %d, %v; want the %d nodes before the last and ErrTruncated", got, err, last)
	}
}
