package sgx

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseQuote checks that ParseQuote and PCKCertificates never panic, that a parsed quote keeps
// its signed bytes, and that Marshal round-trips.
func FuzzParseQuote(f *testing.F) {
	for _, q := range sgxQuotes(f) {
		f.Add(q)
		f.Add(toV4(q))
	}
	f.Add(read(f, tdxQuote))
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := ParseQuote(b)
		if err != nil {
			return
		}
		if len(q.signed) != headerSize+reportBodySize || len(q.qeReport) != reportBodySize {
			t.Fatalf("signed %d bytes, QE report %d bytes", len(q.signed), len(q.qeReport))
		}
		enc := q.Marshal()
		if q2, err := ParseQuote(enc); err != nil || !bytes.Equal(q2.Marshal(), enc) {
			t.Fatalf("Marshal does not round-trip: %v", err)
		}
		if certs, err := q.PCKCertificates(); err == nil {
			PCKExtensionOf(certs[0])
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

// FuzzTCBInfo checks that ParseTCBInfo and ParseQEIdentity never panic and that what they accept
// is complete.
func FuzzTCBInfo(f *testing.F) {
	names, _ := filepath.Glob(testdata + "*/*/*.json")
	names = append(names, testdata+"tdx/go-tdx-guest/sample_tcbinfo_response_v5", testdata+"tdx/go-tdx-guest/sample_qeIdentity_response")
	for _, name := range names {
		f.Add(read(f, strings.TrimPrefix(name, testdata)))
	}
	f.Add(tcbInfoV2([16]uint8{1, 2, 3}, 4, StatusUpToDate))
	f.Fuzz(func(t *testing.T, body []byte) {
		if ti, err := ParseTCBInfo(body); err == nil && (len(ti.TCBLevels) == 0 || len(ti.raw) == 0) {
			t.Fatalf("accepted TCB info without levels or signed bytes: %+v", ti)
		}
		if id, err := ParseQEIdentity(body); err == nil && (len(id.TCBLevels) == 0 || len(id.raw) == 0) {
			t.Fatalf("accepted QE identity without levels or signed bytes: %+v", id)
		}
	})
}
