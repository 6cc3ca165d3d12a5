package tdx

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sgx"
	"github.com/ppml/ppml/collateral"
	"github.com/ppml/ppml/internal/testfiles"
)

// TestVerifySets verifies every TDX set of testdata/attestation with the verdict its README gives:
// statuses below UpToDate are claims, a platform below every level an error.
func TestVerifySets(t *testing.T) {
	for _, s := range testfiles.TDXSets() {
		t.Run(s.Name, func(t *testing.T) {
			quote, at, v := setVerifier(t, s.Name)
			c, err := v.Verify(context.Background(), quote, at)
			if s.NotSupported {
				wantErr(t, err, sgx.ErrTCBLevelNotSupported, "TDX TCB status: TCB level not supported")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.TEE != attest.TDX || c.Platform != attest.Intel || c.TCBStatus != s.Status || !slices.Equal(c.AdvisoryIDs, append([]string{}, s.Advisories...)) {
				t.Errorf("claims %+v, want TDX, intel, %s %v", c, s.Status, s.Advisories)
			}
			if c.Debug != s.Debug || c.TD.Attributes.Debug != s.Debug {
				t.Errorf("debug %v, want %v", c.Debug, s.Debug)
			}
			if len(c.MRTD) != 48 || len(c.RTMRs) != 4 || len(c.ReportData) != 64 || len(c.TD.TEETCBSVN) != 16 || c.TCBDate == nil || c.TCBEvaluationDataNumber == 0 {
				t.Errorf("claims %+v", c)
			}
		})
	}
}

// TestClaims pins the claims of TDX-11 (TD 1.5, module updated since launch) and TDX-1 (TD 1.0).
func TestClaims(t *testing.T) {
	quote, at, v := setVerifier(t, "TDX-11")
	c, err := v.Verify(context.Background(), quote, at)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(c)
	for _, want := range []string{
		`"mrtd":"ece51dc95034ed0e1aad68e57b2d9d0a54d79f5b75626adbc4bbe9576971e85ed33702d96be68134a841fb5de7f839bf"`,
		`"attributes":{"raw":"0000001000000000","debug":false,"sept_ve_disable":true,"migratable":false,"pks":false,"kl":false,"perfmon":false,"icssd":false,"lass":false}`,
		`"tee_tcb_svn":"04010300000000000000000000000000","tee_tcb_svn2":"07010300000000000000000000000000"`,
		`"mr_service_td":"000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"`,
		`"tcb_status":"TDRelaunchAdvised","advisory_ids":["INTEL-SA-01036","INTEL-SA-01099"]`,
		`"tcb_date":"2024-03-13T00:00:00Z","tcb_evaluation_data_number":18,"qe_status":"UpToDate"`,
		`"tdx_module":{"id":"TDX_01","isv_svn":4,"tcb_status":"OutOfDate","tcb_date":"2024-03-13T00:00:00Z","advisory_ids":["INTEL-SA-01036","INTEL-SA-01099"]}`,
		`"behind":[{"component":"tdx_module","index":0,"name":"TDX_01","platform":4,"level":6}]`,
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("claims\n%s\nlack %s", got, want)
		}
	}
	if s := c.TCBExplanation(); !strings.Contains(s, "relaunch the TD") {
		t.Errorf("explanation %q", s)
	}

	quote, at, v = setVerifier(t, "TDX-1")
	if c, err = v.Verify(context.Background(), quote, at); err != nil {
		t.Fatal(err)
	}
	if c.TD.MRServiceTD != nil || c.TD.TEETCBSVN2 != nil || c.TDXModule.ID != "TDX_01" || c.Behind != nil {
		t.Errorf("TD 1.0 claims %+v", c.TD)
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

func TestSGXQuoteRefused(t *testing.T) {
	quote, at, v := setVerifier(t, "TDX-1")
	_ = quote
	_, err := v.Verify(context.Background(), read(t, "sgx/oasis-core/quote_v3_ecdsa_p256_pck_chain.bin"), at)
	wantErr(t, err, sgx.ErrUnsupported, "TDX quote format: unsupported: an SGX quote")
}

func TestTampered(t *testing.T) {
	quote, at, v := setVerifier(t, "TDX-1")
	for _, tc := range []struct {
		name string
		off  int
		text string
	}{
		{"report data", 568 + 63, "TDX quote signature"}, // TD quote body: last byte of REPORTDATA
		{"MRTD", 48 + 136, "TDX quote signature"},
		{"quote signature", 636, "TDX quote signature"},
		{"QE report", 636 + 64 + 64 + 6 + 10, "TDX QE report"},
		{"PCK certificate", len(quote) - 2000, "TDX PCK certificate chain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := bytes.Clone(quote)
			q[tc.off] ^= 1
			_, err := v.Verify(context.Background(), q, at)
			wantErr(t, err, nil, tc.text)
		})
	}
	_, err := v.Verify(context.Background(), quote[:1000], at)
	wantErr(t, err, sgx.ErrFormat, "TDX quote format")
}

func TestVerifyTimes(t *testing.T) {
	quote, _, v := setVerifier(t, "TDX-1")
	// The TCB info expires 2024-10-02T07:25:12Z, the QE identity 2024-10-02T06:47:57Z.
	_, err := v.Verify(context.Background(), quote, time.Date(2024, 10, 3, 0, 0, 0, 0, time.UTC))
	wantErr(t, err, sgx.ErrExpired, "TDX QE identity: QE identity expired")
	// Before the PCK certificate was issued.
	_, err = v.Verify(context.Background(), quote, time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC))
	wantErr(t, err, sgx.ErrNotYetValid, "TDX PCK certificate chain")
	_, err = v.Verify(context.Background(), quote, time.Time{})
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
	_, b := set(t, "TDX-1")
	_, err = NewVerifier(Options{Collateral: b, Roots: roots, SkipCRL: true})
	wantErr(t, err, attest.ErrUntrustedRoot, "TDX collateral: SGX TCB info: issuer chain")
}

func TestRevocation(t *testing.T) {
	// Without CRLs, verification needs SkipCRL.
	s, b := set(t, "TDX-1")
	v, err := NewVerifier(Options{Collateral: b})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), s.ReadQuote(t), s.At)
	wantErr(t, err, sgx.ErrNoRevocationData, "TDX revocation: revocation cannot be checked")

	// TDX-8's PCK CRL is stale after 2025-07-19T10:00:35Z, its TCB info and QE identity last
	// until 10:16:03 and 10:32:27.
	quote, _, v := setVerifier(t, "TDX-8")
	_, err = v.Verify(context.Background(), quote, time.Date(2025, 7, 19, 10, 5, 0, 0, time.UTC))
	wantErr(t, err, sgx.ErrStaleCRL, "TDX revocation")
}

func TestVerifierKind(t *testing.T) {
	quote, at, v := setVerifier(t, "TDX-1")
	reg := attest.Registry{attest.TDX: v}
	if v.Kind() != attest.TDX {
		t.Fatalf("kind %q", v.Kind())
	}
	if _, err := reg.Verify(context.Background(), attest.TDX, quote, at); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkVerify measures verifications of TDX-1 (quote v4) with its collateral checked once.
func BenchmarkVerify(b *testing.B) {
	quote, at, v := setVerifier(b, "TDX-1")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), quote, at); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}

// TestConcurrent runs one Verifier from several goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	_, at, v := setVerifier(t, "TDX-5")
	quotes := [][]byte{read(t, "tdx/trustee/tdx_quote_4.dat"), read(t, "tdx/openenclave/tdx_quote.bin")}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), quotes[i%2], at); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

// TestIntelVerifier checks the verifier of genuine platforms: it asks the source for the TDX
// collateral of the quote's platform, and refuses SGX quotes.
func TestIntelVerifier(t *testing.T) {
	s, b := set(t, "TDX-1")
	var asked []collateral.Platform
	v := NewIntelVerifier(func(_ context.Context, p collateral.Platform) (*collateral.Bundle, error) {
		asked = append(asked, p)
		return b, nil
	}, true)
	if v.Kind() != attest.TDX {
		t.Fatalf("kind %q", v.Kind())
	}
	c, err := v.Verify(context.Background(), s.ReadQuote(t), s.At)
	if err != nil {
		t.Fatal(err)
	}
	if c.TEE != attest.TDX || c.TCBStatus != "UpToDate" || len(asked) != 1 || asked[0].TEE != collateral.TDX || asked[0].FMSPC != "C0806F000000" {
		t.Errorf("claims %+v, asked %v", c, asked)
	}
	_, err = v.Verify(context.Background(), read(t, "sgx/oasis-core/quote_v3_ecdsa_p256_pck_chain.bin"), s.At)
	wantErr(t, err, sgx.ErrUnsupported, "SGX quote format: unsupported: an SGX quote, want TDX")
}
