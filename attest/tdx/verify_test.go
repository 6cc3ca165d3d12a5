package tdx

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/pcs"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/collateral"
)

func TestVerifySets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		quote   string
		bundle  *collateral.Bundle
		skipCRL bool
		at      time.Time
		debug   bool
		mrtd    string
	}{
		{"TDX-1", oasisQuote, oasisBundle(t), true, tdx1Time, false,
			"91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"},
		// The quote is followed by 70 bytes of padding, which no signature covers: ignored.
		{"TDX-2", oasisTrailing, oasisBundle(t), true, tdx2Time, false,
			"91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"},
		{"TDX-5", trusteeQuote4, googleBundle(t), false, tdx4Time, true, ""},
		{"TDX-6", oeQuote, googleBundle(t), false, tdx4Time, false,
			"569e660ca18bdc532697faa4a2238ef2e439c2381a2239553c49d9708ed40f0c8612b5bcb621e431bb188f4de5bfd8a8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newVerifier(t, tc.bundle, tc.skipCRL).Verify(context.Background(), read(t, tc.quote), tc.at)
			if err != nil {
				t.Fatal(err)
			}
			if c.TEE != attest.TDX || c.Platform != "intel" || c.TCBStatus != "UpToDate" || len(c.AdvisoryIDs) != 0 {
				t.Errorf("claims %+v, want TDX, intel, UpToDate, no advisories", c)
			}
			if c.Debug != tc.debug {
				t.Errorf("debug %v, want %v", c.Debug, tc.debug)
			}
			if len(c.MRTD) != 48 || len(c.RTMRs) != 4 || len(c.ReportData) != 64 {
				t.Errorf("MRTD %d bytes, %d RTMRs, report data %d bytes", len(c.MRTD), len(c.RTMRs), len(c.ReportData))
			}
			if tc.mrtd != "" && c.MRTD.String() != tc.mrtd {
				t.Errorf("MRTD %s, want %s", c.MRTD, tc.mrtd)
			}
		})
	}
}

// TestUpperCaseFMSPC pins a limitation of go-tdx-guest v0.3.1: it compares the PCK certificate's
// FMSPC (lower-case hex) with the TCB info's case-sensitively, so genuine TCB infos that spell it
// in upper case, as both dcap-qvl bundles do, are refused. TDX-8 should verify (UpToDate); when a
// go-tdx-guest release fixes this, move TDX-8 to TestVerifySets.
func TestUpperCaseFMSPC(t *testing.T) {
	_, err := newVerifier(t, phalaCollateral(t, phalaBundle), false).Verify(context.Background(), read(t, phalaQuote), tdx8Time)
	wantErr(t, err, nil, `FMSPC from PCK Certificate("b0c06f000000") is not equal to FMSPC value from Intel PCS's reported TDX TCB info("B0C06F000000")`)
}

// TestReportData checks that the claims carry the quote's report data (TDX-6: all zero).
func TestReportData(t *testing.T) {
	c, err := newVerifier(t, googleBundle(t), false).Verify(context.Background(), read(t, oeQuote), tdx4Time)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.ReportData, make([]byte, 64)) {
		t.Errorf("report data %s, want zeros", c.ReportData)
	}
}

func wantErr(t *testing.T, err error, reason error, text string) {
	t.Helper()
	if err == nil {
		t.Fatal("verified, want an error")
	}
	if reason != nil && !errors.Is(err, reason) {
		t.Fatalf("got %v, want %v", err, reason)
	}
	if !strings.Contains(err.Error(), text) {
		t.Fatalf("got %v, want it to say %q", err, text)
	}
	t.Logf("as expected: %v", err)
}

func TestTCBLevelNotSupported(t *testing.T) {
	// TDX-3 and TDX-4: one platform below every TCB level; every signature and chain verifies.
	_, err := newVerifier(t, bundle(t, oasisTCB50806F, oasisQE2023), true).Verify(context.Background(), read(t, oasisOutOfDate), tdx3Time)
	wantErr(t, err, ErrTCBLevelNotSupported, "TDX TCB status: TCB level not supported")
	_, err = newVerifier(t, googleBundle(t), false).Verify(context.Background(), read(t, googleQuote), tdx4Time)
	wantErr(t, err, ErrTCBLevelNotSupported, "TDX TCB status: TCB level not supported")
}

func TestVersion5Unsupported(t *testing.T) {
	// TDX-7, TDX-9/10 and TDX-11 are quotes of version 5, which go-tdx-guest v0.3.1 cannot parse.
	for _, q := range []string{googleQuoteV5, trusteeQuote5, oeQuoteV5} {
		_, err := newVerifier(t, oasisBundle(t), true).Verify(context.Background(), read(t, q), tdx1Time)
		wantErr(t, err, ErrUnsupported, "unsupported quote version 5")
	}
}

// TestTCBLevels checks the TCB level matching on TDX-1's platform (TEE_TCB_SVN module TDX_01)
// against altered copies of its TCB info: go-tdx-guest has checked the genuine one before.
func TestTCBLevels(t *testing.T) {
	q, err := ParseQuote(read(t, oasisQuote))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		alter  func(*pcs.TcbInfo)
		reason error
		text   string
	}{
		{"genuine", func(*pcs.TcbInfo) {}, nil, ""},
		{"platform out of date", func(i *pcs.TcbInfo) { i.TcbLevels[0].TcbStatus = pcs.TcbComponentStatusOutOfDate },
			ErrTCBNotUpToDate, "platform TCB level OutOfDate, TDX module UpToDate"},
		{"module out of date", func(i *pcs.TcbInfo) {
			i.TdxModuleIdentities[1].TcbLevels[0].TcbStatus = pcs.TcbComponentStatusOutOfDate
			i.TdxModuleIdentities[1].TcbLevels[0].AdvisoryIDs = []string{"INTEL-SA-01036"}
		}, ErrTCBNotUpToDate, "platform TCB level UpToDate, TDX module OutOfDate (advisories [INTEL-SA-01036])"},
		{"module unknown", func(i *pcs.TcbInfo) { i.TdxModuleIdentities = nil },
			ErrTCBLevelNotSupported, "no identity for TDX module TDX_01"},
		{"module below every level", func(i *pcs.TcbInfo) { i.TdxModuleIdentities[1].TcbLevels = i.TdxModuleIdentities[1].TcbLevels[:0] },
			ErrTCBLevelNotSupported, "TDX module TDX_01 ISVSVN 5 is below every level"},
		{"PCESVN too low", func(i *pcs.TcbInfo) { i.TcbLevels = i.TcbLevels[:1]; i.TcbLevels[0].Tcb.Pcesvn = 99 },
			ErrTCBLevelNotSupported, "below every TCB level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, oasisBundle(t), true)
			tc.alter(&v.tcbInfo)
			platform, module, err := v.tcbLevels(q)
			if tc.reason == nil {
				if err != nil || platform.TcbStatus != pcs.TcbComponentStatusUpToDate || module.TcbStatus != pcs.TcbComponentStatusUpToDate {
					t.Fatalf("platform %v, module %v, %v", platform, module, err)
				}
				return
			}
			wantErr(t, err, tc.reason, tc.text)
		})
	}
}

func TestTampered(t *testing.T) {
	v := newVerifier(t, oasisBundle(t), true)
	quote := read(t, oasisQuote)
	for _, tc := range []struct {
		name string
		off  int
		text string
	}{
		{"report data", 568 + 63, "unable to verify message digest"}, // TD quote body: last byte of REPORTDATA
		{"MRTD", 48 + 136, "unable to verify message digest"},
		{"quote signature", 636, "unable to verify message digest"},
		{"QE report", 636 + 64 + 64 + 6 + 10, "QE report"},
		{"PCK certificate", len(quote) - 2000, "verify TDX quote with go-tdx-guest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := bytes.Clone(quote)
			q[tc.off] ^= 1
			_, err := v.Verify(context.Background(), q, tdx1Time)
			wantErr(t, err, nil, tc.text)
		})
	}
	_, err := v.Verify(context.Background(), quote[:1000], tdx1Time)
	wantErr(t, err, nil, "parse TDX quote")
}

func TestVerifyTimes(t *testing.T) {
	v := newVerifier(t, oasisBundle(t), true)
	q := read(t, oasisQuote)
	// The TCB info expires 2024-10-02T07:25:12Z, the QE identity 2024-10-02T06:47:57Z.
	_, err := v.Verify(context.Background(), q, time.Date(2024, 10, 3, 0, 0, 0, 0, time.UTC))
	wantErr(t, err, nil, "has expired")
	// Before the PCK certificate was issued.
	_, err = v.Verify(context.Background(), q, time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC))
	wantErr(t, err, nil, "verify TDX quote with go-tdx-guest")
	_, err = v.Verify(context.Background(), q, time.Time{})
	wantErr(t, err, nil, "no verification time")
}

func TestWrongRoot(t *testing.T) {
	block, _ := pem.Decode(read(t, "roots/nvidia_device_root.pem"))
	other, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(other)
	v, err := NewVerifier(Options{Collateral: oasisBundle(t), Roots: roots, SkipCRL: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), read(t, oasisQuote), tdx1Time)
	wantErr(t, err, nil, "certificate signed by unknown authority")
}

func TestRevocation(t *testing.T) {
	// Without CRLs, verification needs SkipCRL.
	_, err := NewVerifier(Options{Collateral: oasisBundle(t)})
	wantErr(t, err, ErrNoRevocationData, "revocation cannot be checked: the collateral lacks the PCK CRL or the root CA CRL")

	// TDX-8's PCK CRL is stale after 2025-07-19T10:00:35Z, its TCB info and QE identity last
	// until 10:16:03 and 10:32:27.
	late := time.Date(2025, 7, 19, 10, 10, 0, 0, time.UTC)
	_, err = newVerifier(t, phalaCollateral(t, phalaBundle), false).Verify(context.Background(), read(t, phalaQuote), late)
	wantErr(t, err, nil, "PCK CRL has expired")

	// A PCK CRL from another CA (the root CA CRL in its place) does not do.
	b := googleBundle(t)
	b.PCKCRL = b.RootCACRL
	_, err = newVerifier(t, b, false).Verify(context.Background(), read(t, trusteeQuote4), tdx4Time)
	wantErr(t, err, nil, "PCK CRL verification failed")
}

func TestCollateralErrors(t *testing.T) {
	_, err := NewVerifier(Options{})
	wantErr(t, err, nil, "no TDX collateral")

	b := oasisBundle(t)
	b.TCBInfo = []byte("{")
	_, err = NewVerifier(Options{Collateral: b, SkipCRL: true})
	wantErr(t, err, nil, "TDX collateral: TCB info")

	b = oasisBundle(t)
	b.QEIdentityIssuerChain = b.QEIdentityIssuerChain[:len(b.QEIdentityIssuerChain)/2]
	_, err = NewVerifier(Options{Collateral: b, SkipCRL: true})
	wantErr(t, err, nil, "QE identity issuer chain")

	// Collateral for another platform.
	_, err = newVerifier(t, bundle(t, oasisTCB50806F, oasisQE), true).Verify(context.Background(), read(t, oasisQuote), tdx1Time)
	wantErr(t, err, nil, "the collateral holds the TCB info for FMSPC 50806f000000, the quote's platform needs c0806f000000")

	// A TD_QE identity altered after Intel signed it.
	b = oasisBundle(t)
	b.QEIdentity = bytes.Replace(b.QEIdentity, []byte(`"isvprodid":2`), []byte(`"isvprodid":3`), 1)
	_, err = newVerifier(t, b, true).Verify(context.Background(), read(t, oasisQuote), tdx1Time)
	wantErr(t, err, nil, "QeIdentity response verification failed")
}

func TestVerifierKind(t *testing.T) {
	var v attest.Verifier = newVerifier(t, oasisBundle(t), true)
	if v.Kind() != attest.TDX {
		t.Fatalf("kind %q", v.Kind())
	}
	reg := attest.Registry{attest.TDX: v}
	if _, err := reg.Verify(context.Background(), attest.TDX, read(t, oasisQuote), tdx1Time); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkVerify(b *testing.B) {
	q := read(b, oasisQuote)
	v := newVerifier(b, oasisBundle(b), true)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), q, tdx1Time); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}

// TestConcurrent runs one Verifier from several goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	v := newVerifier(t, googleBundle(t), false)
	quotes := [][]byte{read(t, trusteeQuote4), read(t, oeQuote)}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), quotes[i%2], tdx4Time); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
