package sgx

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ppml/ppml/collateral"
)

// wantErr checks that err is an *Error of step wrapping reason.
func wantErr(t *testing.T, err error, step Step, reason error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v, want an *Error of step %q", err, step)
	}
	if e.Step != step || !errors.Is(err, reason) {
		t.Fatalf("got %v (step %q), want step %q wrapping %q", err, e.Step, step, reason)
	}
	t.Logf("as expected: %v", err)
}

func TestVerifySets(t *testing.T) {
	sgx4 := ratlsQuotes(t, gramineCert)
	sgx5 := ratlsQuotes(t, ratsTLSCert)
	outOfDate := []string{"INTEL-SA-00586", "INTEL-SA-00614", "INTEL-SA-00615", "INTEL-SA-00657"}
	for _, tc := range []struct {
		name       string
		quote      []byte
		bundle     *collateral.Bundle
		at         time.Time
		status     string
		advisories []string
		fmspc      string
		mrenclave  string
		debug      bool
	}{
		{"SGX-1", read(t, oasisQuote), oasisBundle(t), sgx1Time, StatusSWHardeningNeeded,
			[]string{"INTEL-SA-00615", "INTEL-SA-00657"}, "00606A000000",
			"68823bc62f409ee33a32ea270cfe45d4b19a6fb3c8570d7bc186cbe062398e8f", false},
		{"SGX-2", read(t, mcQuote), mobilecoinBundle(t), sgx2Time, StatusSWHardeningNeeded,
			[]string{"INTEL-SA-00334", "INTEL-SA-00615"}, "00906ED50000",
			"840d61b0585dc8b4dc90f53af293c760fda06bee75978a6a86263ffb296423f4", false},
		{"SGX-4 legacy", sgx4["legacy"], oasisBundle(t), sgx1Time, StatusOutOfDate, outOfDate, "00606A000000",
			"0866e7ca11b9f4efe4bf39b2607f4e1299f111920d96d95719080f01b62b7585", true},
		{"SGX-4 tagged", sgx4["tagged"], oasisBundle(t), sgx1Time, StatusOutOfDate, outOfDate, "00606A000000",
			"0866e7ca11b9f4efe4bf39b2607f4e1299f111920d96d95719080f01b62b7585", true},
		{"SGX-5 tagged", sgx5["tagged"], oasisBundle(t), sgx1Time, StatusOutOfDate, outOfDate, "00606A000000",
			"38e1b40b8c68186f359c97ecb6a89965d9d8638f2df06fbe18e84d79a266c041", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Verify(tc.quote, Options{Time: tc.at, Collateral: tc.bundle, SkipCRL: true})
			if err != nil {
				t.Fatal(err)
			}
			if v.TCBStatus != tc.status || !slices.Equal(v.AdvisoryIDs, tc.advisories) {
				t.Errorf("status %s %v, want %s %v", v.TCBStatus, v.AdvisoryIDs, tc.status, tc.advisories)
			}
			if v.QEStatus != StatusUpToDate || v.PlatformStatus != tc.status {
				t.Errorf("QE status %s, platform %s", v.QEStatus, v.PlatformStatus)
			}
			if v.FMSPC != tc.fmspc || hex.EncodeToString(v.Quote.Body.MREnclave[:]) != tc.mrenclave || v.Debug() != tc.debug {
				t.Errorf("FMSPC %s MRENCLAVE %x debug %v", v.FMSPC, v.Quote.Body.MREnclave, v.Debug())
			}
		})
	}
}

func TestSGX1Fields(t *testing.T) {
	v, err := Verify(read(t, oasisQuote), Options{Time: sgx1Time, Collateral: oasisBundle(t), SkipCRL: true})
	if err != nil {
		t.Fatal(err)
	}
	b := v.Quote.Body
	if hex.EncodeToString(b.MRSigner[:]) != "9affcfae47b848ec2caf1c49b4b283531e1cc425f93582b36806e52a43d78d1a" ||
		b.ISVProdID != 0 || b.ISVSVN != 0 || b.Flags() != 0x05 || v.Quote.QEReport.ISVSVN != 9 {
		t.Errorf("report body %+v", b)
	}
	if v.PCK.PCESVN < 13 || v.PCK.SGXType != 1 || v.PCK.PCEID != [2]byte{} || v.TCBDate.Format(time.DateOnly) != "2022-08-10" {
		t.Errorf("PCK %+v, TCB date %v", v.PCK, v.TCBDate)
	}
}

func TestRevocation(t *testing.T) {
	t.Run("no CRLs", func(t *testing.T) {
		_, err := Verify(read(t, oasisQuote), Options{Time: sgx1Time, Collateral: oasisBundle(t)})
		wantErr(t, err, StepRevocation, ErrNoRevocationData)
	})
	t.Run("SGX-2 stale PCK CRL", func(t *testing.T) {
		_, err := Verify(read(t, mcQuote), Options{Time: sgx2Time, Collateral: mobilecoinBundle(t)})
		wantErr(t, err, StepRevocation, ErrStaleCRL)
	})
	t.Run("SGX-2 root CRL only", func(t *testing.T) {
		b := mobilecoinBundle(t)
		b.PCKCRL, b.PCKCRLIssuerChain = nil, nil
		_, err := Verify(read(t, mcQuote), Options{Time: sgx2Time, Collateral: b})
		wantErr(t, err, StepRevocation, ErrNoRevocationData)
	})
	t.Run("CRL of another PCK CA", func(t *testing.T) {
		// The Processor CA's CRL cannot tell about a Platform CA certificate.
		b := mobilecoinBundle(t)
		b.TCBInfo, b.QEIdentity = read(t, oasisTCB), read(t, oasisQE)
		_, err := Verify(read(t, oasisQuote), Options{Time: time.Date(2023, 5, 1, 0, 0, 0, 0, time.UTC), Collateral: b})
		wantErr(t, err, StepRevocation, ErrNoRevocationData)
	})
	t.Run("CRL signed by another key", func(t *testing.T) {
		b := mobilecoinBundle(t)
		b.PCKCRLIssuerChain = read(t, mcChain) // the TCB Signing cert did not sign it
		_, err := NewVerifier(Options{Collateral: b})
		wantErr(t, err, StepRevocation, ErrSignature)
	})
}

func TestExpiredCollateral(t *testing.T) {
	// SGX-3: the PCK certificate is valid only after the collateral expired.
	q := read(t, occlumQuote)
	for _, at := range []time.Time{sgx3Time, sgx1Time} {
		_, err := Verify(q, Options{Time: at, Collateral: oasisBundle(t), SkipCRL: true})
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrExpired) && !errors.Is(err, ErrNotYetValid) {
			t.Fatalf("at %v: got %v, want expired or not yet valid", at, err)
		}
		t.Logf("as expected: %v", err)
	}
	p, err := ParseQuote(q)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Body.Debug() || string(p.Body.ReportData[:4]) != "test" {
		t.Errorf("occlum quote: debug %v, report data %q", p.Body.Debug(), p.Body.ReportData[:4])
	}
}

func TestVerifyTimes(t *testing.T) {
	q := read(t, oasisQuote)
	for _, tc := range []struct {
		unix   int64
		step   Step
		reason error
	}{
		{1671194735, StepQEIdentity, ErrNotYetValid}, // one second before the QE identity's issueDate
		{1673786737, StepQEIdentity, ErrExpired},     // after its nextUpdate
		{1891163522, StepPCKChain, ErrExpired},       // the PCK leaf has expired
		{1670238720, StepPCKChain, ErrNotYetValid},   // the PCK leaf is not valid yet
	} {
		_, err := Verify(q, Options{Time: time.Unix(tc.unix, 0), Collateral: oasisBundle(t), SkipCRL: true})
		wantErr(t, err, tc.step, tc.reason)
	}
	if _, err := Verify(q, Options{Collateral: oasisBundle(t), SkipCRL: true}); err == nil {
		t.Error("verified without a time")
	}
}

func TestVerifyCollateralErrors(t *testing.T) {
	q := read(t, oasisQuote)
	t.Run("bad TCB issuer chain", func(t *testing.T) {
		_, err := Verify(q, Options{Time: sgx1Time, Collateral: bundle(t, oasisTCB, oasisQE, oasisBad), SkipCRL: true})
		wantErr(t, err, StepTCBInfo, ErrSignature)
	})
	t.Run("bad QE identity issuer chain", func(t *testing.T) {
		b := oasisBundle(t)
		b.QEIdentityIssuerChain = read(t, oasisBad)
		_, err := Verify(q, Options{Time: sgx1Time, Collateral: b, SkipCRL: true})
		wantErr(t, err, StepQEIdentity, ErrSignature)
	})
	t.Run("tampered TCB info", func(t *testing.T) {
		b := oasisBundle(t)
		b.TCBInfo = bytes.Replace(b.TCBInfo, []byte(`"SWHardeningNeeded"`), []byte(`"UpToDate"         `), 1)
		_, err := Verify(q, Options{Time: sgx1Time, Collateral: b, SkipCRL: true})
		wantErr(t, err, StepTCBInfo, ErrSignature)
	})
	t.Run("FMSPC mismatch", func(t *testing.T) {
		_, err := Verify(q, Options{Time: sgx2Time, Collateral: bundle(t, mcTCB, mcQE, mcChain), SkipCRL: true})
		wantErr(t, err, StepTCBInfo, ErrMismatch)
	})
	t.Run("TDX QE identity", func(t *testing.T) {
		b := oasisBundle(t)
		b.QEIdentity = read(t, tdxQE)
		_, err := Verify(q, Options{Time: time.Date(2023, 6, 20, 0, 0, 0, 0, time.UTC), Collateral: b, SkipCRL: true})
		wantErr(t, err, StepQEIdentity, ErrMismatch)
	})
	t.Run("wrong root", func(t *testing.T) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(read(t, nvidiaRoot))
		_, err := Verify(q, Options{Time: sgx1Time, Collateral: oasisBundle(t), Roots: pool, SkipCRL: true})
		wantErr(t, err, StepTCBInfo, ErrUntrusted)
	})
	t.Run("no collateral", func(t *testing.T) {
		_, err := Verify(q, Options{Time: sgx1Time})
		var e *Error
		if !errors.As(err, &e) || e.Step != StepCollateral {
			t.Fatalf("got %v", err)
		}
	})
}

func TestVerifyWrongPCKRoot(t *testing.T) {
	// Collateral verified against the Intel root, then a quote whose PCK chain must end at a root
	// that is not in the pool: only the Verifier's pool counts, not the root inside the quote.
	v, err := NewVerifier(Options{Collateral: oasisBundle(t), SkipCRL: true})
	if err != nil {
		t.Fatal(err)
	}
	v.roots = x509.NewCertPool()
	v.roots.AppendCertsFromPEM(read(t, nvidiaRoot))
	_, err = v.Verify(read(t, oasisQuote), sgx1Time)
	wantErr(t, err, StepPCKChain, ErrUntrusted)
}

func TestVerifyTampered(t *testing.T) {
	orig := read(t, oasisQuote)
	warm, err := NewVerifier(Options{Collateral: oasisBundle(t), SkipCRL: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := warm.Verify(orig, sgx1Time); err != nil {
		t.Fatal(err)
	}
	const qeReport = headerSize + reportBodySize + 4 + signatureSize + publicKeySize
	const qeAuth = qeReport + reportBodySize + signatureSize + 2
	for _, tc := range []struct {
		name   string
		offset int
		step   Step
		reason error
	}{
		{"header user data", 30, StepQuoteSignature, ErrSignature},
		{"header QE SVN", 8, StepQuoteSignature, ErrSignature},
		{"body MRENCLAVE", headerSize + 64, StepQuoteSignature, ErrSignature},
		{"body report data", headerSize + 320, StepQuoteSignature, ErrSignature},
		{"quote signature", headerSize + reportBodySize + 4 + 5, StepQuoteSignature, ErrSignature},
		{"attestation key", headerSize + reportBodySize + 4 + signatureSize + 7, StepQEReport, ErrMismatch},
		{"QE report", qeReport + 100, StepQEReport, ErrSignature},
		{"QE report signature", qeReport + reportBodySize + 3, StepQEReport, ErrSignature},
		{"QE auth data", qeAuth + 1, StepQEReport, ErrMismatch},
		{"PCK leaf certificate", len(orig) - 3000, StepPCKChain, ErrUntrusted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := bytes.Clone(orig)
			q[tc.offset] ^= 0x01
			_, err := Verify(q, Options{Time: sgx1Time, Collateral: oasisBundle(t), SkipCRL: true})
			wantErr(t, err, tc.step, tc.reason)
			// A Verifier that knows the platform (its PCK chain and signed QE report) is not
			// fooled either.
			_, err = warm.Verify(q, sgx1Time)
			wantErr(t, err, tc.step, tc.reason)
		})
	}
	if _, err := warm.Verify(orig, sgx1Time); err != nil {
		t.Errorf("the untampered quote after the others: %v", err)
	}
}

func TestTCBLevelSelection(t *testing.T) {
	v, err := NewVerifier(Options{Collateral: oasisBundle(t), SkipCRL: true})
	if err != nil {
		t.Fatal(err)
	}
	vd, err := v.Verify(read(t, oasisQuote), sgx1Time)
	if err != nil {
		t.Fatal(err)
	}
	qe := &v.qeID.TCBLevels[0]
	pck := *vd.PCK
	pck.PCESVN = 12 // below levels 0-1 (PCESVN 13), level 2 (PCESVN 11) matches
	if l, err := v.evaluate(vd.Quote, &pck, qe); err != nil || l.TCBStatus != StatusOutOfDate || len(l.AdvisoryIDs) != 4 {
		t.Errorf("PCESVN 12: %+v %v", l, err)
	} else if !slices.Contains(l.Behind, Behind{BehindPCE, 0, "PCE", 12, 13}) {
		t.Errorf("PCESVN 12: behind %+v", l.Behind)
	}
	pck = *vd.PCK
	pck.TCBComponents[0] = 3 // below every level (component 1 is at least 4 everywhere)
	_, err = v.evaluate(vd.Quote, &pck, qe)
	wantErr(t, err, StepTCBStatus, ErrTCBLevelNotSupported)
}

func TestMergeStatus(t *testing.T) {
	for _, tc := range []struct{ platform, qe, want string }{
		{StatusUpToDate, StatusUpToDate, StatusUpToDate},
		{StatusSWHardeningNeeded, StatusUpToDate, StatusSWHardeningNeeded},
		{StatusUpToDate, StatusOutOfDate, StatusOutOfDate},
		{StatusSWHardeningNeeded, StatusOutOfDate, StatusOutOfDate},
		{StatusConfigurationNeeded, StatusOutOfDate, StatusOutOfDateConfigurationNeeded},
		{StatusConfigurationAndSWHardeningNeeded, StatusOutOfDate, StatusOutOfDateConfigurationNeeded},
		{StatusOutOfDateConfigurationNeeded, StatusOutOfDate, StatusOutOfDateConfigurationNeeded},
		{StatusOutOfDate, StatusUpToDate, StatusOutOfDate},
		{StatusUpToDate, StatusRevoked, StatusRevoked},
		{StatusRevoked, StatusUpToDate, StatusRevoked},
	} {
		if got := mergeStatus(tc.platform, tc.qe); got != tc.want {
			t.Errorf("mergeStatus(%s, %s) = %s, want %s", tc.platform, tc.qe, got, tc.want)
		}
	}
	if got := mergeAdvisories([]string{"A", "B"}, []string{"B", "C"}); !slices.Equal(got, []string{"A", "B", "C"}) {
		t.Errorf("mergeAdvisories = %v", got)
	}
}

func TestCollateralDirRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if err := oasisBundle(t).WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	b, err := collateral.ReadDir(dir, "00606A000000")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(read(t, oasisQuote), Options{Time: sgx1Time, Collateral: b, SkipCRL: true}); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkVerify(b *testing.B) {
	q := read(b, oasisQuote)
	v, err := NewVerifier(Options{Collateral: oasisBundle(b), SkipCRL: true})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(q, sgx1Time); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}

func BenchmarkVerifyWithCollateral(b *testing.B) {
	q := read(b, oasisQuote)
	opts := Options{Time: sgx1Time, Collateral: oasisBundle(b), SkipCRL: true}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(q, opts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}

func TestIntelRoot(t *testing.T) {
	// The pinned root is byte for byte the one in testdata, whose fingerprint the README gives.
	if !bytes.Equal(intelRootCAPEM, read(t, intelRootPEM)) {
		t.Fatal("embedded Intel SGX Root CA differs from testdata/attestation/roots/trusted_root.pem")
	}
	certs, err := parseCerts(intelRootCAPEM)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(certs[0].Raw); hex.EncodeToString(sum[:]) != "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3" {
		t.Errorf("fingerprint %x", sum)
	}
}

// TestQEIdentityChecks alters the parsed (already signature-checked) QE identity and TCB info of a
// Verifier to reach the checks that real signed collateral cannot fail.
func TestQEIdentityChecks(t *testing.T) {
	q := read(t, oasisQuote)
	for _, tc := range []struct {
		name   string
		alter  func(v *Verifier)
		step   Step
		reason error
	}{
		{"MRSIGNER", func(v *Verifier) { v.qeID.MRSigner[0] ^= 1 }, StepQEIdentity, ErrMismatch},
		{"ISVPRODID", func(v *Verifier) { v.qeID.ISVProdID = 2 }, StepQEIdentity, ErrMismatch},
		{"MISCSELECT", func(v *Verifier) { v.qeID.MiscSelect[0] = 1 }, StepQEIdentity, ErrMismatch},
		{"ATTRIBUTES", func(v *Verifier) { v.qeID.Attributes[0] = 0x13 }, StepQEIdentity, ErrMismatch},
		// Intel's QVL: a QE below every level is not supported (not Revoked).
		{"QE below every level", func(v *Verifier) { v.qeID.TCBLevels = v.qeID.TCBLevels[:1]; v.qeID.TCBLevels[0].ISVSVN = 10 }, StepTCBStatus, ErrTCBLevelNotSupported},
		{"QE revoked", func(v *Verifier) { v.qeID.TCBLevels[0].Status = StatusRevoked }, StepTCBStatus, ErrRevoked},
		{"platform level revoked", func(v *Verifier) { v.tcbInfo.TCBLevels[0].Status = StatusRevoked }, StepTCBStatus, ErrRevoked},
		{"PCE-ID", func(v *Verifier) { v.tcbInfo.PCEID[1] = 1 }, StepTCBInfo, ErrMismatch},
		{"TDX TCB info", func(v *Verifier) { v.tcbInfo.ID = "TDX" }, StepTCBInfo, ErrMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(Options{Collateral: oasisBundle(t), SkipCRL: true})
			if err != nil {
				t.Fatal(err)
			}
			tc.alter(v)
			_, err = v.Verify(q, sgx1Time)
			wantErr(t, err, tc.step, tc.reason)
		})
	}
	// A QE one level behind makes the platform OutOfDate, as in Intel's QVL.
	v, err := NewVerifier(Options{Collateral: oasisBundle(t), SkipCRL: true})
	if err != nil {
		t.Fatal(err)
	}
	v.qeID.TCBLevels[0].ISVSVN = 10
	vd, err := v.Verify(q, sgx1Time)
	if err != nil {
		t.Fatal(err)
	}
	if vd.QEStatus != StatusOutOfDate || vd.TCBStatus != StatusOutOfDate || !slices.Equal(vd.AdvisoryIDs, []string{"INTEL-SA-00615", "INTEL-SA-00657", "INTEL-SA-00477"}) {
		t.Errorf("QE %s, final %s %v", vd.QEStatus, vd.TCBStatus, vd.AdvisoryIDs)
	}
}
