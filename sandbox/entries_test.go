package sandbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"fmt"
	"slices"
	"testing"

	"github.com/ppml/ppml/trustfs"
)

// someEntries returns n entries of every kind, as a plan of a large manifest makes them.
func someEntries(n int) entryTable {
	t := entryTable{{Path: "0", Kind: trustfs.Folder}, {Path: "0/log", Kind: trustfs.Unchecked, Host: "var/log"}, {Path: "1/mnt", Kind: trustfs.File}}
	for i := range n {
		t = append(t, trustfs.Entry{Path: fmt.Sprintf("2/lib/file%d.py", i), Kind: trustfs.Trusted, Host: fmt.Sprintf("usr/lib/python3/file%d.py", i), SHA256: sha256.Sum256([]byte{byte(i), byte(i >> 8)})})
	}
	return t
}

// TestEntryTable: the entries reach the sandbox process as they were planned, through the
// configuration's gob encoding, and a truncated or altered encoding is an error, never a
// shorter table.
func TestEntryTable(t *testing.T) {
	want := someEntries(100)
	cfg := stageConfig{Trusted: want, Path: "/bin/x"}
	got, err := throughGob(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Trusted, want) || got.Path != cfg.Path {
		t.Fatalf("decoded %+v", got.Trusted[:3])
	}
	b, _ := want.MarshalBinary()
	for _, bad := range [][]byte{b[:len(b)-1], append(slices.Clone(b), 0), b[:1], {}} {
		var e entryTable
		if err := e.UnmarshalBinary(bad); err == nil {
			t.Errorf("%d bytes of %d: decoded %d entries, want an error", len(bad), len(b), len(e))
		}
	}
	unknown := slices.Clone(b)
	unknown[1] = 9 // the first entry's kind
	var e entryTable
	if err := e.UnmarshalBinary(unknown); err == nil {
		t.Error("an unknown kind decoded")
	}
}

// FuzzEntryTable: decoding never panics, and what decodes comes back the same through an
// encoding.
func FuzzEntryTable(f *testing.F) {
	b, _ := someEntries(3).MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var e entryTable
		if e.UnmarshalBinary(b) != nil {
			return
		}
		again, _ := e.MarshalBinary()
		var back entryTable
		if err := back.UnmarshalBinary(again); err != nil || !slices.Equal(back, e) {
			t.Fatalf("%x decoded to %+v, which comes back as %+v (%v)", b, e, back, err)
		}
	})
}

// BenchmarkConfig encodes and decodes, as the launcher and the sandbox process do, the
// configuration of a manifest with 25,000 trusted files.
func BenchmarkConfig(b *testing.B) {
	cfg := stageConfig{Trusted: someEntries(25000)}
	for b.Loop() {
		if _, err := throughGob(&cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// throughGob returns cfg as the sandbox process decodes it.
func throughGob(cfg *stageConfig) (*stageConfig, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(cfg); err != nil {
		return nil, err
	}
	var got stageConfig
	err := gob.NewDecoder(&buf).Decode(&got)
	return &got, err
}
