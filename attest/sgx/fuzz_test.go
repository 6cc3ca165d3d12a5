package sgx

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ppml/ppml/collateral"
	"github.com/ppml/ppml/internal/testfiles"
)

// FuzzParseQuote checks that ParseQuote and PCKCertificates never panic, that a parsed quote keeps
// its signed bytes, that Marshal round-trips, and that the platform it names is one the PCS knows. The seeds are every SGX quote (v3, and v4) and
// every TDX quote (v4, v5 with TD 1.5 bodies, with trailing bytes) of testdata.
func FuzzParseQuote(f *testing.F) {
	for _, q := range sgxQuotes(f) {
		f.Add(q)
		f.Add(toV4(q))
	}
	for _, s := range testfiles.TDXSets() {
		f.Add(s.ReadQuote(f))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := ParseQuote(b)
		if err != nil {
			return
		}
		body := map[uint16]int{BodySGX: reportBodySize, BodyTD10: td10Size, BodyTD15: td15Size}[q.BodyType]
		if q.Header.Version == 5 {
			body += descriptorSize
		}
		if len(q.signed) != headerSize+body || len(q.qeReport) != reportBodySize || (q.TD != nil) != (q.BodyType != BodySGX) {
			t.Fatalf("signed %d bytes, QE report %d bytes", len(q.signed), len(q.qeReport))
		}
		enc := q.Marshal()
		if len(enc) != len(b)-q.Trailing {
			t.Fatalf("Marshal gives %d bytes, %d were parsed", len(enc), len(b)-q.Trailing)
		}
		if q2, err := ParseQuote(enc); err != nil || !bytes.Equal(q2.Marshal(), enc) {
			t.Fatalf("Marshal does not round-trip: %v", err)
		}
		if p, _, err := q.platform(); err == nil {
			if len(p.FMSPC) != 12 || p.CA != collateral.ProcessorCA && p.CA != collateral.PlatformCA || (p.TEE == collateral.TDX) != q.IsTD() {
				t.Fatalf("platform %v of a quote of TEE type %#x", p, q.Header.TEEType)
			}
		}
	})
}

// FuzzPCKExtension checks that ParsePCKExtension never panics and that Marshal round-trips.
func FuzzPCKExtension(f *testing.F) {
	for _, b := range sgxQuotes(f) {
		q, err := ParseQuote(b)
		if err != nil {
			f.Fatal(err)
		}
		certs, err := q.PCKCertificates()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sgxExtension(f, certs[0]))
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		e, err := ParsePCKExtension(der)
		if err != nil {
			return
		}
		enc, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if e2, err := ParsePCKExtension(enc); err != nil || *e2 != *e {
			t.Fatalf("Marshal does not round-trip: %+v, %v", e2, err)
		}
	})
}

// FuzzTCBInfo checks that ParseTCBInfo never panics and that what it accepts is complete; the
// seeds include TDX TCB infos with module identities.
func FuzzTCBInfo(f *testing.F) {
	addCollateral(f, "tcb_info", testdata+"tdx/go-tdx-guest/sample_tcbinfo_response_v5")
	f.Add(tcbInfoV2([16]uint8{1, 2, 3}, 4, StatusUpToDate))
	f.Fuzz(func(t *testing.T, body []byte) {
		ti, err := ParseTCBInfo(body)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error wraps neither ErrFormat nor ErrUnsupported: %v", err)
			}
			return
		}
		if len(ti.TCBLevels) == 0 || len(ti.raw) == 0 {
			t.Fatalf("accepted TCB info without levels or signed bytes: %+v", ti)
		}
		if (ti.ID == "TDX") != (ti.TDXModule != nil) {
			t.Fatalf("TCB info of id %q with module %v", ti.ID, ti.TDXModule)
		}
		for _, id := range ti.TDXModuleIdentities {
			if len(id.TCBLevels) == 0 {
				t.Fatalf("accepted TDX module identity %s without levels", id.ID)
			}
		}
	})
}

// FuzzQEIdentity checks that ParseQEIdentity never panics and that what it accepts is complete.
func FuzzQEIdentity(f *testing.F) {
	addCollateral(f, "qe_identity", testdata+"tdx/go-tdx-guest/sample_qeIdentity_response")
	f.Fuzz(func(t *testing.T, body []byte) {
		id, err := ParseQEIdentity(body)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error wraps neither ErrFormat nor ErrUnsupported: %v", err)
			}
			return
		}
		if len(id.TCBLevels) == 0 || len(id.raw) == 0 {
			t.Fatalf("accepted QE identity without levels or signed bytes: %+v", id)
		}
	})
}

// addCollateral adds the recorded collateral files whose names hold kind, and extra, as seeds.
func addCollateral(f *testing.F, kind string, extra ...string) {
	names, _ := filepath.Glob(testdata + "*/*/*" + kind + "*.json")
	if len(names) == 0 {
		f.Fatalf("no %s in %s", kind, testdata)
	}
	for _, name := range append(names, extra...) {
		f.Add(read(f, strings.TrimPrefix(name, testdata)))
	}
}

// FuzzSigStruct checks that ParseSigStruct never panics, fails only with ErrFormat, and reads
// what it accepts from the offsets of Intel's SIGSTRUCT layout.
func FuzzSigStruct(f *testing.F) {
	var modulus [384]byte
	modulus[383] = 0x80
	f.Add(sigStruct(modulus, false))
	f.Add(sigStruct(modulus, true))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSigStruct(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		if len(b) != SigStructSize || s.Exponent != 3 {
			t.Fatalf("accepted %d bytes with exponent %d", len(b), s.Exponent)
		}
		if s.MRSigner != sha256.Sum256(b[128:512]) || !bytes.Equal(s.MREnclave[:], b[960:992]) ||
			s.Debug() != (b[928]&AttrDebug != 0) {
			t.Fatalf("fields not where SIGSTRUCT keeps them: %+v", s)
		}
	})
}
