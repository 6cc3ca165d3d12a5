package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sgx"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

var enclave = Enclave{
	MREnclave: sha256.Sum256([]byte("workload")),
	MRSigner:  sha256.Sum256([]byte("signer")),
	ISVProdID: 7, ISVSVN: 3,
}

func newPlatform(t *testing.T, status string) *Platform {
	t.Helper()
	p, err := Init(filepath.Join(t.TempDir(), "sim"), status, now)
	if err != nil {
		t.Fatal(err)
	}
	// Everything must come back from the folder.
	if p, err = Load(p.Dir); err != nil {
		t.Fatal(err)
	}
	return p
}

func verify(t *testing.T, p *Platform, quote []byte, at time.Time) (*sgx.Verdict, error) {
	t.Helper()
	b, err := p.Collateral()
	if err != nil {
		t.Fatal(err)
	}
	return sgx.Verify(quote, sgx.Options{Time: at, Roots: p.Roots(), Collateral: b})
}

func TestQuoteVerifies(t *testing.T) {
	p := newPlatform(t, "")
	var rd [64]byte
	copy(rd[:], "report data")
	quote, err := p.Quote(enclave, rd)
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify(t, p, quote, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	body := v.Quote.Body
	if body.MREnclave != enclave.MREnclave || body.MRSigner != enclave.MRSigner || body.ISVProdID != 7 || body.ISVSVN != 3 || body.ReportData != rd {
		t.Errorf("report body %+v does not carry the enclave", body)
	}
	if v.Debug() || v.TCBStatus != "UpToDate" || len(v.AdvisoryIDs) != 0 || v.FMSPC != p.Settings.FMSPC {
		t.Errorf("verdict: debug %v, status %s %v, FMSPC %s", v.Debug(), v.TCBStatus, v.AdvisoryIDs, v.FMSPC)
	}
}

// TestAttestationKeyCertifiedOnce checks that, as on a real platform, every quote carries the QE
// report and PCK signature made when the platform was made, and that the folder must hold them.
func TestAttestationKeyCertifiedOnce(t *testing.T) {
	made, err := Init(filepath.Join(t.TempDir(), "sim"), "", now)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(made.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var qe [][]byte
	for i, p := range []*Platform{made, made, loaded} {
		b, err := p.Quote(enclave, [64]byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		q, err := sgx.ParseQuote(b)
		if err != nil {
			t.Fatal(err)
		}
		qe = append(qe, append(q.QEReport.Marshal(), q.QEReportSignature[:]...))
	}
	if !bytes.Equal(qe[0], qe[1]) || !bytes.Equal(qe[0], qe[2]) {
		t.Error("quotes of one platform carry different QE reports or signatures")
	}

	sig := qe[0][len(qe[0])-64:]
	for name, b := range map[string][]byte{"truncated": sig[:10], "another": append([]byte{sig[0] ^ 1}, sig[1:]...)} {
		if err := os.WriteFile(filepath.Join(made.Dir, qeReportSigFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(made.Dir); err == nil || !strings.Contains(err.Error(), qeReportSigFile) {
			t.Errorf("Load with %s %s: %v", name, qeReportSigFile, err)
		}
	}
}

func TestStatuses(t *testing.T) {
	for _, status := range Statuses {
		t.Run(status, func(t *testing.T) {
			p := newPlatform(t, status)
			quote, err := p.Quote(enclave, [64]byte{})
			if err != nil {
				t.Fatal(err)
			}
			v, err := verify(t, p, quote, now)
			if status == "Revoked" {
				if !errors.Is(err, sgx.ErrRevoked) {
					t.Fatalf("revoked TCB: err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.TCBStatus != status {
				t.Errorf("status %s, want %s", v.TCBStatus, status)
			}
			if status != "UpToDate" && (len(v.AdvisoryIDs) != 1 || v.AdvisoryIDs[0] != simAdvisory) {
				t.Errorf("advisories %v", v.AdvisoryIDs)
			}
		})
	}
	if _, err := Init(filepath.Join(t.TempDir(), "x"), "Fine", now); err == nil {
		t.Error("an unknown status was accepted")
	}
}

func TestDebugEnclave(t *testing.T) {
	p := newPlatform(t, "")
	e := enclave
	e.Debug = true
	quote, err := p.Quote(e, [64]byte{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify(t, p, quote, now)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Debug() {
		t.Error("debug flag lost")
	}
}

func TestRevokedPCK(t *testing.T) {
	p := newPlatform(t, "")
	quote, err := p.Quote(enclave, [64]byte{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.RevokePCK(now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := verify(t, p, quote, now.Add(2*time.Hour)); !errors.Is(err, sgx.ErrRevoked) {
		t.Fatalf("revoked PCK: err = %v", err)
	}
}

func TestUntrustedRoots(t *testing.T) {
	p := newPlatform(t, "")
	quote, err := p.Quote(enclave, [64]byte{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Collateral()
	if err != nil {
		t.Fatal(err)
	}
	// Intel's root does not vouch for a simulated platform.
	if _, err := sgx.Verify(quote, sgx.Options{Time: now, Collateral: b}); !errors.Is(err, sgx.ErrUntrusted) {
		t.Errorf("with Intel's root: err = %v", err)
	}
	// Nor does another simulated platform.
	other := newPlatform(t, "")
	if _, err := sgx.Verify(quote, sgx.Options{Time: now, Roots: other.Roots(), Collateral: b}); !errors.Is(err, sgx.ErrUntrusted) {
		t.Errorf("with another platform's root: err = %v", err)
	}
}

func TestExpiredCollateral(t *testing.T) {
	p := newPlatform(t, "")
	quote, err := p.Quote(enclave, [64]byte{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = verify(t, p, quote, now.Add(collateralValidity+time.Hour))
	if !errors.Is(err, sgx.ErrExpired) && !errors.Is(err, sgx.ErrStaleCRL) {
		t.Errorf("after the collateral's next update: err = %v", err)
	}
}

func TestTamperedQuote(t *testing.T) {
	p := newPlatform(t, "")
	quote, err := p.Quote(enclave, [64]byte{})
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int{10, 48 + 64, 48 + 320} { // header, MRENCLAVE, report data
		bad := append([]byte(nil), quote...)
		bad[off] ^= 1
		if _, err := verify(t, p, bad, now); !errors.Is(err, sgx.ErrSignature) {
			t.Errorf("byte %d flipped: err = %v", off, err)
		}
	}
}

// TestAttesterAndVerifier goes through the attest interfaces, as RA-TLS and the server will.
func TestAttesterAndVerifier(t *testing.T) {
	p := newPlatform(t, "OutOfDate")
	var a attest.Attester = Attester{Platform: p, Enclave: enclave}
	var rd attest.ReportData
	copy(rd[:], "binding")
	evidence, err := a.Attest(rd)
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	claims, err := attest.Registry{attest.SGX: v}.Verify(context.Background(), a.Kind(), evidence, now)
	if err != nil {
		t.Fatal(err)
	}
	if claims.TEE != attest.SGX || claims.Platform != "simulated" || claims.TCBStatus != "OutOfDate" ||
		claims.MREnclave.String() != hex.EncodeToString(enclave.MREnclave[:]) || *claims.ISVProdID != 7 ||
		!bytes.Equal(claims.ReportData, rd[:]) || claims.Debug {
		t.Errorf("claims %+v", claims)
	}
	if _, err := (attest.Registry{}).Verify(context.Background(), attest.SGX, evidence, now); !errors.Is(err, attest.ErrUnknownKind) {
		t.Errorf("empty registry: %v", err)
	}
}

// BenchmarkVerify measures the verification of a simulated quote with the platform's collateral
// checked once (a Verifier), as the provisioning server does.
func BenchmarkVerify(b *testing.B) {
	p, err := Init(filepath.Join(b.TempDir(), "sim"), "", now)
	if err != nil {
		b.Fatal(err)
	}
	quote, err := p.Quote(enclave, [64]byte{})
	if err != nil {
		b.Fatal(err)
	}
	v, err := p.Verifier()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := v.Verify(context.Background(), quote, now); err != nil {
			b.Fatal(err)
		}
	}
}
