package manifest

import (
	"os"
	"testing"
)

// FuzzParse checks that Parse never panics, and that the canonical form of what it accepts
// parses to itself.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{minimal, spelledOut, tabled, signedManifest, "sys.ioctl_structs.a = [1.5, { b = 'c' }]\n" + minimal} {
		f.Add([]byte(seed))
	}
	if b, err := os.ReadFile("testdata/ppml-tutorial.manifest"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		again, err := Parse(m.Canonical())
		if err != nil {
			t.Fatalf("the canonical form does not parse: %v\n%s", err, m.Canonical())
		}
		if string(again.Canonical()) != string(m.Canonical()) {
			t.Fatalf("the canonical form changes when parsed:\n%s\n%s", m.Canonical(), again.Canonical())
		}
	})
}
