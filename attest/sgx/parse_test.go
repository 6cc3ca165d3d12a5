package sgx

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// sgxQuotes are every real SGX quote in testdata.
func sgxQuotes(t testing.TB) map[string][]byte {
	quotes := map[string][]byte{}
	for _, name := range []string{oasisQuote, occlumQuote, mcQuote} {
		quotes[name] = read(t, name)
	}
	for _, cert := range []string{gramineCert, ratsTLSCert, "ratls/interoperable-ra-tls/intel-sgxsdk-cert.pem"} {
		for ext, q := range ratlsQuotes(t, cert) {
			quotes[cert+"#"+ext] = q
		}
	}
	return quotes
}

func TestParseQuoteReal(t *testing.T) {
	for name, b := range sgxQuotes(t) {
		q, err := ParseQuote(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		certs, err := q.PCKCertificates()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := PCKExtensionOf(certs[0]); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if q.Header.Version != 3 || fmt.Sprintf("%x", q.Header.QEVendorID) != "939a7233f79c4ca9940a0db3957f0607" ||
			q.QEReport.Flags()&AttrInit == 0 || len(q.QEAuthData) != 32 {
			t.Errorf("%s: header %+v", name, q.Header)
		}
	}
}

func TestParseQuoteRejects(t *testing.T) {
	orig := read(t, oasisQuote)
	const sigData = headerSize + reportBodySize + 4
	const authLen = sigData + signatureSize + publicKeySize + reportBodySize + signatureSize
	certType := authLen + 2 + 32
	set16 := func(off int, v uint16) []byte {
		b := bytes.Clone(orig)
		binary.LittleEndian.PutUint16(b[off:], v)
		return b
	}
	set32 := func(off int, v uint32) []byte {
		b := bytes.Clone(orig)
		binary.LittleEndian.PutUint32(b[off:], v)
		return b
	}
	for _, tc := range []struct {
		name   string
		quote  []byte
		reason error
	}{
		{"empty", nil, ErrFormat},
		{"version 2", set16(0, 2), ErrUnsupported},
		{"version 6", set16(0, 6), ErrUnsupported},
		{"version 5 without descriptor", set16(0, 5), ErrUnsupported},
		{"vendor", set16(12, 0), ErrUnsupported},
		{"key type 3", set16(2, 3), ErrUnsupported},
		{"TEE type TDX in version 3", set32(4, 0x81), ErrUnsupported},
		{"TEE type 1", set32(4, 1), ErrUnsupported},
		{"signature length too long", set32(sigData-4, uint32(len(orig)-sigData+1)), ErrFormat},
		{"signature length too short", set32(sigData-4, uint32(len(orig)-sigData-1)), ErrFormat},
		{"auth data too long", set16(authLen, 0xffff), ErrFormat},
		{"auth data one byte shorter", set16(authLen, 31), ErrFormat},
		{"certification data type 1", set16(certType, 1), ErrUnsupported},
		{"certification data size too long", set32(certType+2, 1<<31), ErrFormat},
		{"certification data size too short", set32(certType+2, uint32(len(orig)-certType-6-1)), ErrFormat},
	} {
		_, err := ParseQuote(tc.quote)
		if !errors.Is(err, tc.reason) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.reason)
		}
	}
	for n := range len(orig) {
		if _, err := ParseQuote(orig[:n]); !errors.Is(err, ErrFormat) {
			t.Fatalf("truncated to %d bytes: got %v", n, err)
		}
	}
}

func TestPCKCertificatesRejects(t *testing.T) {
	q, err := ParseQuote(read(t, oasisQuote))
	if err != nil {
		t.Fatal(err)
	}
	chain := q.PCKChain
	for name, pemData := range map[string][]byte{
		"junk after":   append(bytes.Clone(chain), "junk"...),
		"two certs":    chain[:bytes.LastIndex(chain, []byte("-----BEGIN"))],
		"private key":  bytes.ReplaceAll(chain, []byte("CERTIFICATE"), []byte("PRIVATE KEY")),
		"empty":        nil,
		"broken DER":   bytes.Replace(chain, []byte("MII"), []byte("MIA"), 1),
		"four certs":   append(bytes.Clone(chain), chain[bytes.LastIndex(chain, []byte("-----BEGIN")):]...),
		"not even PEM": []byte("hello"),
	} {
		q.PCKChain = pemData
		if _, err := q.PCKCertificates(); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

// toV4 rewrites a v3 SGX quote in the version 4 layout: the QE report and the PCK chain move into
// certification data of type 6.
func toV4(v3 []byte) []byte {
	const sigData = headerSize + reportBodySize + 4
	inner := v3[sigData+signatureSize+publicKeySize:]
	v4 := bytes.Clone(v3[:sigData+signatureSize+publicKeySize])
	binary.LittleEndian.PutUint16(v4[0:], 4)
	v4 = binary.LittleEndian.AppendUint16(v4, certDataQEReport)
	v4 = binary.LittleEndian.AppendUint32(v4, uint32(len(inner)))
	v4 = append(v4, inner...)
	binary.LittleEndian.PutUint32(v4[sigData-4:], uint32(len(v4)-sigData))
	return v4
}

func TestParseQuoteV4(t *testing.T) {
	v3b := read(t, oasisQuote)
	v3, err := ParseQuote(v3b)
	if err != nil {
		t.Fatal(err)
	}
	v4b := toV4(v3b)
	v4, err := ParseQuote(v4b)
	if err != nil {
		t.Fatal(err)
	}
	if v4.Header.Version != 4 || v4.Body != v3.Body || v4.QEReport != v3.QEReport ||
		!bytes.Equal(v4.PCKChain, v3.PCKChain) || !bytes.Equal(v4.QEAuthData, v3.QEAuthData) {
		t.Error("v4 quote differs from its v3 source")
	}
	// The header changed, so the attestation key's signature no longer holds; every step
	// before it passes.
	_, err = Verify(v4b, Options{Time: sgx1Time, Collateral: oasisBundle(t), SkipCRL: true})
	wantErr(t, err, StepQuoteSignature, ErrSignature)

	wrongType := bytes.Clone(v4b)
	binary.LittleEndian.PutUint16(wrongType[headerSize+reportBodySize+4+signatureSize+publicKeySize:], certDataPCKChain)
	if _, err := ParseQuote(wrongType); !errors.Is(err, ErrUnsupported) {
		t.Errorf("v4 with certification data type 5 at the outer level: %v", err)
	}
	// Bytes after the signature data are counted and ignored, as Intel's QVL ignores them.
	if q, err := ParseQuote(append(v4b, 0, 0)); err != nil || q.Trailing != 2 || !bytes.Equal(q.Marshal(), v4b) {
		t.Errorf("v4 with 2 trailing bytes: %v", err)
	}
}

func TestParsePCKExtension(t *testing.T) {
	q, err := ParseQuote(read(t, mcQuote))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := q.PCKCertificates()
	if err != nil {
		t.Fatal(err)
	}
	e, err := PCKExtensionOf(certs[0])
	if err != nil {
		t.Fatal(err)
	}
	// Processor CA PCK: Standard SGX type, no platform instance ID.
	if fmt.Sprintf("%X", e.FMSPC) != "00906ED50000" || e.SGXType != 0 || e.PlatformInstanceID != [16]byte{} || e.PCEID != [2]byte{} {
		t.Errorf("%+v", e)
	}
	if _, err := PCKExtensionOf(certs[1]); !errors.Is(err, ErrFormat) {
		t.Errorf("PCK CA has no SGX extension, got %v", err)
	}
	ext := sgxExtension(t, certs[0])
	for name, der := range map[string][]byte{
		"empty":       nil,
		"trailing":    append(bytes.Clone(ext), 0),
		"truncated":   ext[:len(ext)-1],
		"not a SEQ":   {0x04, 0x00},
		"empty SEQ":   {0x30, 0x00},
		"foreign OID": {0x30, 0x09, 0x30, 0x07, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x05, 0x00},
	} {
		if _, err := ParsePCKExtension(der); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

func TestParseCollateral(t *testing.T) {
	tcbs, _ := filepath.Glob(testdata + "tdx/*/tcb_info*.json")
	tcbs = append(tcbs, testdata+oasisTCB, testdata+mcTCB, testdata+"tdx/go-tdx-guest/sample_tcbinfo_response_v5")
	for _, name := range tcbs {
		ti, err := ParseTCBInfo(read(t, strings.TrimPrefix(name, testdata)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if ti.Version != 3 || len(ti.TCBLevels) == 0 || !ti.IssueDate.Before(ti.NextUpdate) {
			t.Errorf("%s: %+v", name, ti)
		}
	}
	for _, name := range []string{oasisQE, mcQE, tdxQE} {
		id, err := ParseQEIdentity(read(t, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if id.MiscSelectMask != [4]byte{0xff, 0xff, 0xff, 0xff} || len(id.TCBLevels) == 0 {
			t.Errorf("%s: %+v", name, id)
		}
	}
	ti, err := ParseTCBInfo(read(t, oasisTCB))
	if err != nil {
		t.Fatal(err)
	}
	if l := ti.TCBLevels[0]; ti.ID != "SGX" || l.PCESVN != 13 || l.SGXComponents[1] != 9 || l.SGXComponents[4] != 255 || l.Status != StatusSWHardeningNeeded {
		t.Errorf("%+v", l)
	}
}

// tcbInfoV2 writes a version 2 TCB info body with one level.
func tcbInfoV2(comps [16]uint8, pcesvn int, status string) []byte {
	var tcb strings.Builder
	for i, c := range comps {
		fmt.Fprintf(&tcb, `"sgxtcbcomp%02dsvn":%d,`, i+1, c)
	}
	return fmt.Appendf(nil, `{"tcbInfo":{"version":2,"issueDate":"2020-01-01T00:00:00Z","nextUpdate":"2020-02-01T00:00:00Z",`+
		`"fmspc":"00606a000000","pceId":"0000","tcbType":0,"tcbEvaluationDataNumber":5,"tcbLevels":[`+
		`{"tcb":{%s"pcesvn":%d},"tcbDate":"2019-11-13T00:00:00Z","tcbStatus":"%s"}]},"signature":"%s"}`,
		tcb.String(), pcesvn, status, strings.Repeat("00", 64))
}

func TestParseTCBInfoV2(t *testing.T) {
	comps := [16]uint8{7, 9, 3, 3, 255, 255, 1}
	ti, err := ParseTCBInfo(tcbInfoV2(comps, 13, StatusConfigurationNeeded))
	if err != nil {
		t.Fatal(err)
	}
	l := ti.TCBLevels[0]
	if ti.Version != 2 || ti.ID != "" || l.SGXComponents != comps || l.PCESVN != 13 || l.Status != StatusConfigurationNeeded {
		t.Errorf("%+v", ti)
	}
	for name, body := range map[string][]byte{
		"SVN over 255":    bytes.Replace(tcbInfoV2(comps, 13, StatusUpToDate), []byte(`"sgxtcbcomp05svn":255`), []byte(`"sgxtcbcomp05svn":256`), 1),
		"missing comp16":  bytes.Replace(tcbInfoV2(comps, 13, StatusUpToDate), []byte(`"sgxtcbcomp16svn":0,`), nil, 1),
		"negative PCESVN": tcbInfoV2(comps, -1, StatusUpToDate),
		"unknown status":  tcbInfoV2(comps, 13, "Fine"),
		"short signature": bytes.Replace(tcbInfoV2(comps, 13, StatusUpToDate), []byte(`"signature":"00`), []byte(`"signature":"`), 1),
		"no tcbInfo":      []byte(`{"signature":"00"}`),
		"not JSON":        []byte(`{"tcbInfo":`),
	} {
		if _, err := ParseTCBInfo(body); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	if _, err := ParseTCBInfo(bytes.Replace(tcbInfoV2(comps, 13, StatusUpToDate), []byte(`"version":2`), []byte(`"version":4`), 1)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("version 4: %v", err)
	}
}

func TestSignedBytesAreRaw(t *testing.T) {
	// The signature covers the object exactly as served: white space inside it matters.
	b := oasisBundle(t)
	b.QEIdentity = bytes.Replace(b.QEIdentity, []byte(`"id":"QE",`), []byte(`"id":"QE", `), 1)
	_, err := NewVerifier(Options{Collateral: b})
	wantErr(t, err, StepQEIdentity, ErrSignature)
}

// sigStruct builds a SIGSTRUCT from the layout in docs/gramine-compat.md (§5.3).
func sigStruct(modulus [384]byte, debug bool) []byte {
	b := make([]byte, SigStructSize)
	le := binary.LittleEndian
	copy(b[0:], sigStructHeader)
	copy(b[20:], []byte{0x31, 0x01, 0x25, 0x20}) // 2025-01-31
	copy(b[24:], sigStructHeader2)
	copy(b[128:], modulus[:])
	le.PutUint32(b[512:], 3)
	le.PutUint32(b[900:], 0)
	le.PutUint32(b[904:], 0xffffffff)
	flags := uint64(AttrMode64Bit)
	if debug {
		flags |= AttrDebug
	}
	le.PutUint64(b[928:], flags)
	le.PutUint64(b[936:], 3)
	le.PutUint64(b[944:], 0xffffffffffffffff)
	le.PutUint64(b[952:], 0xfffffffffff9ff1b)
	for i := range 32 {
		b[960+i] = byte(i)
	}
	le.PutUint16(b[1024:], 7)
	le.PutUint16(b[1026:], 42)
	return b
}

func TestParseSigStruct(t *testing.T) {
	var modulus [384]byte
	for i := range modulus {
		modulus[i] = byte(i * 7)
	}
	modulus[383] |= 0x80 // a 3072-bit modulus: top bit of the last (most significant) byte
	s, err := ParseSigStruct(sigStruct(modulus, false))
	if err != nil {
		t.Fatal(err)
	}
	wantSigner := sha256.Sum256(modulus[:])
	if s.MRSigner != wantSigner || s.Modulus != modulus || s.Exponent != 3 {
		t.Errorf("MRSIGNER %x, want %x", s.MRSigner, wantSigner)
	}
	// The big-endian modulus gives a different hash: MRSIGNER hashes the stored bytes.
	be := slices.Clone(modulus[:])
	slices.Reverse(be)
	if sha256.Sum256(be) == s.MRSigner {
		t.Error("MRSIGNER must hash the little-endian modulus")
	}
	if s.MREnclave[31] != 31 || s.ISVProdID != 7 || s.ISVSVN != 42 || s.Date != "2025-01-31" ||
		s.MiscMask != 0xffffffff || s.Debug() || s.DebugAllowed() {
		t.Errorf("%+v", s)
	}
	d, err := ParseSigStruct(sigStruct(modulus, true))
	if err != nil || !d.Debug() || !d.DebugAllowed() {
		t.Errorf("debug SIGSTRUCT: %+v, %v", d, err)
	}
	free := sigStruct(modulus, false)
	free[944] &^= AttrDebug
	if f, err := ParseSigStruct(free); err != nil || f.Debug() || !f.DebugAllowed() {
		t.Errorf("DEBUG left free by the mask: %+v, %v", f, err)
	}

	badHeader := sigStruct(modulus, false)
	badHeader[4] = 0
	badHeader2 := sigStruct(modulus, false)
	badHeader2[24] = 0
	badExp := sigStruct(modulus, false)
	badExp[512] = 5
	for name, b := range map[string][]byte{
		"short": sigStruct(modulus, false)[:SigStructSize-1], "long": append(sigStruct(modulus, false), 0),
		"header": badHeader, "header2": badHeader2, "exponent": badExp,
	} {
		if _, err := ParseSigStruct(b); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

func TestVerifierConcurrent(t *testing.T) {
	v, err := NewVerifier(Options{Collateral: oasisBundle(t), SkipCRL: true})
	if err != nil {
		t.Fatal(err)
	}
	quotes := [][]byte{read(t, oasisQuote), ratlsQuotes(t, gramineCert)["legacy"]}
	errs := make(chan error, 8)
	for i := range cap(errs) {
		go func() {
			_, err := v.Verify(quotes[i%2], sgx1Time.Add(time.Duration(i)*time.Second))
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	// A cached chain is still checked against the time.
	_, err = v.Verify(quotes[0], time.Unix(1891163522, 0))
	wantErr(t, err, StepPCKChain, ErrExpired)
}

func TestMarshalRoundTrip(t *testing.T) {
	for name, b := range sgxQuotes(t) {
		for _, enc := range [][]byte{b, toV4(b)} {
			q, err := ParseQuote(enc)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !bytes.Equal(q.Marshal(), enc) {
				t.Errorf("%s v%d: Marshal differs from the parsed bytes", name, q.Header.Version)
			}
		}
		q, _ := ParseQuote(b)
		certs, err := q.PCKCertificates()
		if err != nil {
			t.Fatal(err)
		}
		e, err := PCKExtensionOf(certs[0])
		if err != nil {
			t.Fatal(err)
		}
		der, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if e2, err := ParsePCKExtension(der); err != nil || *e2 != *e {
			t.Errorf("%s: PCK extension round trip: %+v, %v", name, e2, err)
		}
	}
}
