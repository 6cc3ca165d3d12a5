package provision

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/trust"
	"github.com/ppml/ppml/internal/testfiles"
	"github.com/ppml/ppml/provision/wire"
	"github.com/ppml/ppml/ratls"
	"github.com/ppml/ppml/store"
)

const attestation = "../testdata/attestation"

// collateralDir makes a collateral folder from a TCB info and a QE identity of
// testdata/attestation.
func collateralDir(t *testing.T, tcbInfo, qeIdentity string) string {
	return testfiles.CollateralDir(t, t.TempDir(), tcbInfo, qeIdentity)
}

// TestRealGramineCertificate runs the server's verification and policy on the RA-TLS
// certificate of a real Gramine enclave, with Intel's collateral for its platform in a folder
// (set SGX-4 of testdata/attestation: a debug enclave on an out-of-date platform).
func TestRealGramineCertificate(t *testing.T) {
	dir := collateralDir(t, "sgx/oasis-core/tcb_info_v3_fmspc_00606A000000.json", "sgx/oasis-core/qe_identity_v2.json")
	b, err := os.ReadFile(filepath.Join(attestation, "ratls/interoperable-ra-tls/gramine-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := (&trust.Settings{Collateral: dir, SkipCRL: true}).Registry()
	if err != nil {
		t.Fatal(err)
	}
	claims, err := ratls.Verify(context.Background(), cert, reg, time.Unix(1671497404, 0))
	if err != nil {
		t.Fatal(err)
	}
	gramine := Workload{Name: "gramine", TEE: "sgx", MREnclave: []string{claims.MREnclave.String()}, Keys: []string{"default"}}
	if err := gramine.check(""); err != nil {
		t.Fatal(err)
	}
	if _, err := (Policy{gramine}).Admit(claims); err == nil || !strings.Contains(err.Error(), "debug enclaves are not allowed") {
		t.Fatalf("a debug enclave was admitted: %v", err)
	}
	gramine.AllowDebug = true
	if _, err := (Policy{gramine}).Admit(claims); err == nil || !strings.Contains(err.Error(), "TCB status OutOfDate is not accepted") {
		t.Fatalf("an out-of-date platform was admitted: %v", err)
	}
	gramine.AcceptTCB = append(gramine.AcceptTCB, "OutOfDate")
	if w, err := (Policy{gramine}).Admit(claims); err != nil || w.Name != "gramine" {
		t.Fatalf("refused: %v", err)
	}
}

// TestTDXAndSNPVerifiers: the configuration registers TDX and SEV-SNP verifiers, and a real TDX
// quote goes through the server's registry.
func TestTDXAndSNPVerifiers(t *testing.T) {
	dir := collateralDir(t, "tdx/oasis-core/tcb_info_v3_tdx_fmspc_C0806F000000.json", "tdx/oasis-core/qe_identity_v2_tdx2.json")
	reg, err := (&trust.Settings{TDXCollateral: dir, SkipCRL: true, SNP: true}).Registry()
	if err != nil {
		t.Fatal(err)
	}
	if reg[attest.SNP] == nil {
		t.Error("no SEV-SNP verifier")
	}
	quote, err := os.ReadFile(filepath.Join(attestation, "tdx/oasis-core/quote_v4_tdx_ecdsa_p256.bin"))
	if err != nil {
		t.Fatal(err)
	}
	claims, err := reg.Verify(context.Background(), attest.TDX, quote, time.Unix(1725263032, 0))
	if err != nil {
		t.Fatal(err)
	}
	w := Workload{Name: "td", TEE: "tdx", MRTD: []string{claims.MRTD.String()}, Keys: []string{"default"}}
	if err := w.check(""); err != nil {
		t.Fatal(err)
	}
	if _, err := (Policy{w}).Admit(claims); err != nil {
		t.Errorf("TDX workload refused: %v", err)
	}
}

// recorded is an attester that answers every request with recorded evidence, whatever report
// data it is asked to bind: another machine replaying a TEE's evidence.
type recorded struct {
	kind     attest.Kind
	evidence []byte
}

func (r recorded) Kind() attest.Kind                        { return r.kind }
func (r recorded) Attest(attest.ReportData) ([]byte, error) { return r.evidence, nil }

// TestRecordedEvidenceOverTLS: clients present RA-TLS certificates carrying a real TDX quote (set
// TDX-11 of testdata/attestation, its collateral from a PCCS that the server's collateral setting
// names, as for SGX) and a real SEV-SNP report to a server on loopback whose policy admits their
// measurements. With the server's clock pinned where the evidence verifies (at the
// wall clock's time TDX-11's collateral has expired), what fails is that the evidence does not
// bind the certificate's fresh key: the server refuses and audits why at
// the pinned time, with what the TD's TCB status rests on.
func TestRecordedEvidenceOverTLS(t *testing.T) {
	vcek, err := filepath.Abs(filepath.Join(attestation, "snp/trustee/test-vcek.der"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	pccs := httptest.NewServer(testfiles.PCCS(testfiles.TDXSets()[10].CollateralDir(t, t.TempDir()), ""))
	defer pccs.Close()
	// No CRL of AMD's is recorded (testdata/attestation/README.md): skip_crl.
	tb := newTestbed(t, fmt.Sprintf(`collateral = %q
snp = true
snp_certificates = [%q]
skip_crl = true
`, pccs.URL, vcek)+byEnclave+`
[[workload]]
name = "td"
tee = "tdx"
mrtd = ["ece51dc95034ed0e1aad68e57b2d9d0a54d79f5b75626adbc4bbe9576971e85ed33702d96be68134a841fb5de7f839bf"]
keys = ["default"]

[[workload]]
name = "guest"
tee = "snp"
measurement = ["a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c"]
min_tcb = {bootloader = 3, tee = 0, snp = 8, microcode = 115}
keys = ["default"]
`)
	for _, tc := range []struct {
		kind     attest.Kind
		evidence string
		at       time.Time
	}{
		{attest.TDX, "tdx/openenclave/tdx_quote-moduleupdate-seamldr5.dat", time.Unix(1740652640, 0)},
		{attest.SNP, "snp/trustee/test-report.bin", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			evidence, err := os.ReadFile(filepath.Join(attestation, tc.evidence))
			if err != nil {
				t.Fatal(err)
			}
			tb.pinClock(t, tc.at)
			seen := len(tb.audit(t))
			_, err = tb.client(recorded{tc.kind, evidence}).Fetch(context.Background(), "default")
			want := fmt.Sprintf("%s evidence (%s): %v", tc.kind, ratls.Tagged, ratls.ErrBinding)
			if !errors.Is(err, wire.ErrRefused) {
				t.Fatalf("client: err = %v, want a refusal", err)
			}
			rec := tb.lastAudit(t, seen)
			if rec.Decision != store.Deny || !strings.Contains(rec.Reason, want) || !rec.Time.Equal(tc.at) {
				t.Errorf("audit: %s at %v: %q", rec.Decision, rec.Time, rec.Reason)
			}
			// The record says whose evidence it was: the TD's MRTD or the guest's measurement.
			if rec.TEE != string(tc.kind) || rec.MRTD+rec.Measurement == "" {
				t.Errorf("audit: TEE %q, MRTD %q, measurement %q: want the evidence's", rec.TEE, rec.MRTD, rec.Measurement)
			}
			// And what its TCB status rests on, for the owner to review later.
			if tc.kind == attest.TDX && (rec.TCBStatus != "TDRelaunchAdvised" || strings.Join(rec.AdvisoryIDs, " ") != "INTEL-SA-01036 INTEL-SA-01099" ||
				rec.TCBDate == nil || !rec.TCBDate.Equal(time.Date(2024, 3, 13, 0, 0, 0, 0, time.UTC)) || rec.TCBEvaluationDataNumber != 18 ||
				rec.QEStatus != "UpToDate" || rec.TDXModule == nil || *rec.TDXModule != (store.TDXModule{ID: "TDX_01", ISVSVN: 4, Status: "OutOfDate"})) {
				t.Errorf("audit: TCB %s, advisories %v, date %v, evaluation %d, QE %s, module %+v", rec.TCBStatus, rec.AdvisoryIDs,
					rec.TCBDate, rec.TCBEvaluationDataNumber, rec.QEStatus, rec.TDXModule)
			}
		})
	}
}

// TestCollateralFetchEndsWithRequest: a first-time collateral fetch for a genuine SGX quote (set
// SGX-1 of testdata/attestation), from a PCCS that never answers, is cancelled when the request's
// deadline passes: the client is answered in time and the fetch does not outlive the connection.
func TestCollateralFetchEndsWithRequest(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	cancelled := make(chan struct{})
	pccs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(20 * time.Second):
		}
	}))
	defer pccs.Close()
	tb := newTestbed(t, fmt.Sprintf("collateral = %q\nrequest_timeout = \"300ms\"\n", pccs.URL)+byEnclave)
	tb.pinClock(t, time.Unix(1671497404, 0))
	quote, err := os.ReadFile(filepath.Join(attestation, "sgx/oasis-core/quote_v3_ecdsa_p256_pck_chain.bin"))
	if err != nil {
		t.Fatal(err)
	}
	seen := len(tb.audit(t))
	start := time.Now()
	// The connection's deadline has passed with the request's: the refusal cannot be sent.
	if _, err = tb.client(recorded{attest.SGX, quote}).Fetch(context.Background(), "default"); err == nil {
		t.Fatal("keys released without collateral")
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the collateral fetch outlived its request")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refused after %v, want about the request timeout", d)
	}
	if rec := tb.lastAudit(t, seen); !strings.Contains(rec.Reason, "collateral") || !strings.Contains(rec.Reason, context.DeadlineExceeded.Error()) {
		t.Errorf("audit reason %q, want the collateral's deadline named", rec.Reason)
	}
}
