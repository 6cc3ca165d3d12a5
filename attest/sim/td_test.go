package sim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/tdx"
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

// TestTDOutOfDate checks that a platform made OutOfDate is graded so: go-tdx-guest refuses a TCB
// level below UpToDate.
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
	if _, err := v.Verify(context.Background(), quote, now.Add(time.Minute)); !errors.Is(err, tdx.ErrTCBNotUpToDate) || !bytes.Contains([]byte(err.Error()), []byte("OutOfDate")) {
		t.Errorf("OutOfDate platform: %v", err)
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

// TestTDQuoteV5 checks the layout of a version 5 quote as Intel's DCAP defines it: the header,
// the body descriptor (type 3, TD 1.5, 648 bytes), the TD 1.5 body, then the signature data,
// whose signature by the attestation key covers header, descriptor and body, and whose
// certification data of type 6 holds the QE report (binding that key) and the PCK chain.
func TestTDQuoteV5(t *testing.T) {
	p := newTDPlatform(t, 5, "")
	rd := attest.ReportData{7}
	q, err := p.TDQuote(rd)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if v, tee := le.Uint16(q), le.Uint32(q[4:]); v != 5 || tee != 0x81 {
		t.Fatalf("version %d, TEE type %#x", v, tee)
	}
	if typ, size := le.Uint16(q[48:]), le.Uint32(q[50:]); typ != 3 || size != td15Size {
		t.Fatalf("body type %d of %d bytes", typ, size)
	}
	body := q[54 : 54+td15Size]
	switch {
	case !bytes.Equal(body[136:184], testMRTD[:]) || !bytes.Equal(body[184:232], testMRConfigID[:]):
		t.Error("MRTD or MRCONFIGID not at their offsets")
	case !bytes.Equal(body[520:584], rd[:]):
		t.Error("report data not at its offset")
	case !bytes.Equal(body[584:600], teeTCBSVN[:]):
		t.Error("TEE_TCB_SVN2 is not the TCB")
	}
	signed := q[:54+td15Size]
	sigData := q[54+td15Size+4:]
	if n := le.Uint32(q[54+td15Size:]); int(n) != len(sigData) {
		t.Fatalf("signature data length %d, %d bytes follow", n, len(sigData))
	}
	x, y := new(big.Int).SetBytes(sigData[64:96]), new(big.Int).SetBytes(sigData[96:128])
	key := &ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}
	digest := sha256.Sum256(signed)
	if !ecdsa.Verify(key, digest[:], new(big.Int).SetBytes(sigData[:32]), new(big.Int).SetBytes(sigData[32:64])) {
		t.Error("the signature does not verify over header, descriptor and body")
	}
	if typ := le.Uint16(sigData[128:]); typ != 6 {
		t.Errorf("certification data type %d, want 6", typ)
	}
	inner := sigData[134:]
	binding := sha256.Sum256(append(bytes.Clone(sigData[64:128]), qeAuthData...))
	if !bytes.Equal(inner[320:352], binding[:]) { // the QE report's report data
		t.Error("the QE report does not bind the attestation key")
	}
	if !bytes.Equal(lastPEM(inner), p.root.Raw) {
		t.Error("the PCK chain does not end in the platform's root")
	}
	// go-tdx-guest reads version 4 only; attest/tdx says so.
	v, err := LoadVerifier(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), q, now); !errors.Is(err, tdx.ErrUnsupported) {
		t.Errorf("v5 quote: %v, want ErrUnsupported until the DCAP engine reads v5", err)
	}
}
