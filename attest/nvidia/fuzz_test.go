package nvidia

import (
	"bytes"
	"testing"
)

// The SPDM parser: never panics, and what it accepts re-derives consistently.
func FuzzParseEvidence(f *testing.F) {
	f.Add(hopperEvidence(f, "nvidia/trustee/hopperAttestationReport.txt"))
	f.Add(hopperEvidence(f, "nvidia/trustee/hopper_coco_report1.txt"))
	f.Add(newTestGPU(f).evidence(f, make([]byte, 32), 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseEvidence(b)
		if err != nil {
			return
		}
		if ev.SignedLen+SignatureSize+ev.Trailing != len(b) || !bytes.Equal(ev.Request.Nonce[:], b[4:36]) {
			t.Fatalf("signed %d + trailing %d for %d bytes", ev.SignedLen, ev.Trailing, len(b))
		}
		_ = ev.Response.Opaque.VBIOSVersion()
	})
}

// The SWID/XML reader and the signature checks before it: never panic on any bytes.
func FuzzRIM(f *testing.F) {
	real := readTestdata(f, realRIM)
	f.Add(real)
	pki := newTestRIMPKI(f, t2020, t2040)
	f.Add(pki.sign(f, rimXML("550.90.07", map[int][][]byte{0: {make([]byte, 48)}}, 3)))
	f.Add([]byte(rimXML("1.0", map[int][][]byte{1: {make([]byte, 48), make([]byte, 48)}}, 2)))
	roots := poolOf(pki.root)
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := ParseRIM(b); err == nil && len(r.Measurements) == 0 {
			t.Fatal("a RIM without measurements parsed")
		}
		if r, err := VerifyRIM(b, RIMOptions{Time: tNow, Roots: roots}); err == nil && len(r.Chain) == 0 {
			t.Fatal("a verified RIM without a chain")
		}
	})
}
