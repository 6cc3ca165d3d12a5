package tdx

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/ppml/ppml/collateral"
	"github.com/ppml/ppml/internal/testfiles"
)

// set returns a TDX set of testdata/attestation/README.md (TDX-1..11) with its collateral.
func set(t testing.TB, name string) (testfiles.TDXSet, *collateral.Bundle) {
	t.Helper()
	for _, s := range testfiles.TDXSets() {
		if s.Name == name {
			b, err := collateral.ReadDir(s.CollateralDir(t, t.TempDir()), "")
			if err != nil {
				t.Fatal(err)
			}
			return s, b
		}
	}
	t.Fatalf("no set %s", name)
	return testfiles.TDXSet{}, nil
}

// newVerifier returns a Verifier for b or fails the test.
func newVerifier(t testing.TB, b *collateral.Bundle, skipCRL bool) *Verifier {
	t.Helper()
	v, err := NewVerifier(Options{Collateral: b, SkipCRL: skipCRL})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// setVerifier returns a set's quote, its time and a Verifier for its collateral.
func setVerifier(t testing.TB, name string) ([]byte, time.Time, *Verifier) {
	s, b := set(t, name)
	return s.ReadQuote(t), s.At, newVerifier(t, b, !s.CRLs)
}

func read(t testing.TB, name string) []byte {
	return testfiles.Read(t, filepath.Join(testfiles.Attestation, name))
}
