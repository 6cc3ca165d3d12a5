package provision

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/ratls"
)

const attestation = "../testdata/attestation"

// collateralDir makes a collateral folder from a TCB info and a QE identity of
// testdata/attestation, both signed by Intel's TCB signing certificate in oasis-core's chain.
func collateralDir(t *testing.T, tcbInfo, qeIdentity string) string {
	t.Helper()
	dir := t.TempDir()
	chain := "sgx/oasis-core/tcb_info_v3_fmspc_00606A000000_certs.pem"
	for dst, src := range map[string]string{
		"tcb-info.json": tcbInfo, "qe-identity.json": qeIdentity,
		"tcb-info-issuer-chain.pem": chain, "qe-identity-issuer-chain.pem": chain,
	} {
		b, err := os.ReadFile(filepath.Join(attestation, src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
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
	reg, err := Verifiers(&Config{Collateral: dir, SkipCRL: true})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := ratls.Verify(cert, reg, time.Unix(1671497404, 0))
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
	reg, err := Verifiers(&Config{TDXCollateral: dir, SkipCRL: true, SNP: true})
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
	claims, err := reg.Verify(attest.TDX, quote, time.Unix(1725263032, 0))
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
