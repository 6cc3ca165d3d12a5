package sim

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sgx"
)

var (
	testMRTD       = sha512.Sum384([]byte("test image"))
	testMRConfigID = [48]byte{0xc0, 0xf1}
)

func newTDPlatform(t *testing.T, version int, status string) *Platform {
	t.Helper()
	p, err := InitTDX(filepath.Join(t.TempDir(), "td"), TDOptions{QuoteVersion: version, MRTD: testMRTD, MRConfigID: testMRConfigID}, status, now)
	if err != nil {
		t.Fatal(err)
	}
	if p, err = Load(p.Dir); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTDQuoteV4Verifies checks that a simulated TD's v4 quote passes go-tdx-guest's verification
// (attest/tdx, the verifier of genuine quotes) with the platform's root and collateral, and that
// the claims are the TD's: MRTD, MRCONFIGID, the RTMRs of the simulated boot, the report data.
func TestTDQuoteV4Verifies(t *testing.T) {
	p := newTDPlatform(t, 4, "")
	v, err := LoadVerifier(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	rd := attest.ReportData{1, 2, 3}
	rd[63] = 0xff
	quote, err := p.TDAttester().Attest(rd)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), quote, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	rtmr0 := ExtendRTMR(make([]byte, 48), sha512.Sum384([]byte(bootEvents[0])))
	switch {
	case c.TEE != attest.TDX || c.Platform != attest.Simulated || c.TCBStatus != "UpToDate" || c.Debug:
		t.Errorf("claims %+v", c)
	case !bytes.Equal(c.MRTD, testMRTD[:]) || !bytes.Equal(c.TD.MRConfigID, testMRConfigID[:]):
		t.Errorf("MRTD %s, MRCONFIGID %s", c.MRTD, c.TD.MRConfigID)
	case !bytes.Equal(c.RTMRs[0], rtmr0) || !bytes.Equal(c.RTMRs[3], make([]byte, 48)):
		t.Errorf("RTMRs %s", c.RTMRs)
	case !bytes.Equal(c.ReportData, rd[:]):
		t.Errorf("report data %s", c.ReportData)
	}
	// Genuine Intel collateral's verifier does not know the platform; another simulated
	// platform's refuses it as from another root, so that the next verifier may try it.
	other := newTDPlatform(t, 4, "")
	ov, err := LoadVerifier(other.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ov.Verify(context.Background(), quote, now.Add(time.Minute)); !errors.Is(err, attest.ErrUntrustedRoot) {
		t.Errorf("another platform's verifier: %v, want ErrUntrustedRoot", err)
	}
	// A changed byte of the TD report breaks the signature.
	bad := bytes.Clone(quote)
	bad[48+136] ^= 1 // MRTD
	if _, err := v.Verify(context.Background(), bad, now.Add(time.Minute)); err == nil {
		t.Error("a quote with a changed MRTD verified")
	}
	// An SGX platform does not quote its TD, nor a TDX platform enclaves.
	if _, err := p.Quote(enclave, rd); err == nil {
		t.Error("a TDX platform wrote an SGX quote")
	}
	if _, err := newPlatform(t, "").TDQuote(rd); err == nil {
		t.Error("an SGX platform wrote a TDX quote")
	}
}

// TestTDOutOfDate checks that a platform made OutOfDate is graded so, with the advisory of its
// level, for a policy to judge.
func TestTDOutOfDate(t *testing.T) {
	p := newTDPlatform(t, 4, "OutOfDate")
	v, err := LoadVerifier(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	quote, err := p.TDQuote(attest.ReportData{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), quote, now.Add(time.Minute))
	if err != nil || c.TCBStatus != "OutOfDate" || !slices.Contains(c.AdvisoryIDs, simAdvisory) {
		t.Errorf("OutOfDate platform: %+v, %v", c, err)
	}
}

// TestRTMRExtensionsAccumulate checks that extensions of RTMR3 persist in the platform's folder,
// each one SHA-384(RTMR ‖ digest), and show in the quotes.
func TestRTMRExtensionsAccumulate(t *testing.T) {
	p := newTDPlatform(t, 4, "")
	d1, d2 := sha512.Sum384([]byte("one")), sha512.Sum384([]byte("two"))
	if _, err := p.ExtendRTMR(3, d1); err != nil {
		t.Fatal(err)
	}
	again, err := Load(p.Dir) // another process, as it were
	if err != nil {
		t.Fatal(err)
	}
	got, err := again.ExtendRTMR(3, d2)
	if err != nil {
		t.Fatal(err)
	}
	h := sha512.New384()
	h.Write(make([]byte, 48))
	h.Write(d1[:])
	first := h.Sum(nil)
	h.Reset()
	h.Write(first)
	h.Write(d2[:])
	if want := h.Sum(nil); !bytes.Equal(got, want) {
		t.Fatalf("RTMR3 %x, want %x", got, want)
	}
	quote, err := p.TDQuote(attest.ReportData{})
	if err != nil {
		t.Fatal(err)
	}
	if rtmr3 := quote[48+328+3*48 : 48+328+4*48]; !bytes.Equal(rtmr3, got) {
		t.Errorf("the quote's RTMR3 %x, want %x", rtmr3, got)
	}
	if _, err := p.ExtendRTMR(4, d1); err == nil {
		t.Error("RTMR4 extended")
	}
}

// TestTDQuoteV5 checks that a version 5 quote (body descriptor, TD 1.5 body) verifies with the
// DCAP engine, and that its claims are the TD's.
func TestTDQuoteV5(t *testing.T) {
	p := newTDPlatform(t, 5, "")
	rd := attest.ReportData{7}
	q, err := p.TDAttester().Attest(rd)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if v, typ, size := le.Uint16(q), le.Uint16(q[48:]), le.Uint32(q[50:]); v != 5 || typ != sgx.BodyTD15 || size != 648 {
		t.Fatalf("version %d, body type %d of %d bytes", v, typ, size)
	}
	v, err := LoadVerifier(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), q, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.MRTD, testMRTD[:]) || !bytes.Equal(c.TD.MRConfigID, testMRConfigID[:]) || !bytes.Equal(c.ReportData, rd[:]) ||
		!bytes.Equal(c.TD.TEETCBSVN2, teeTCBSVN[:]) || c.TCBStatus != "UpToDate" || !c.TD.Attributes.SEPTVEDisable {
		t.Errorf("claims %+v, TD %+v", c, c.TD)
	}
	bad := bytes.Clone(q)
	bad[54+520] ^= 1 // report data
	if _, err := v.Verify(context.Background(), bad, now.Add(time.Minute)); err == nil {
		t.Error("a v5 quote with changed report data verified")
	}
}
