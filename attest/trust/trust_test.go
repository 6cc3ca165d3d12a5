package trust_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sgx"
	"github.com/ppml/ppml/attest/sim"
	"github.com/ppml/ppml/attest/trust"
	"github.com/ppml/ppml/internal/testfiles"
)

// TestRegistry: the settings register a verifier for each kind they trust and none for the
// others; SGX quotes go to the simulated platforms before Intel's roots, and Intel's refuses a
// simulated quote as coming from an untrusted root.
func TestRegistry(t *testing.T) {
	plat, err := sim.Init(filepath.Join(t.TempDir(), "sim"), "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := testfiles.CollateralDir(t, t.TempDir(), "sgx/oasis-core/tcb_info_v3_fmspc_00606A000000.json", "sgx/oasis-core/qe_identity_v2.json")
	r, err := (&trust.Settings{SimPlatforms: []string{plat.Dir}, Collateral: dir}).Registry()
	if err != nil {
		t.Fatal(err)
	}
	if len(r) != 1 {
		t.Fatalf("registry has %d kinds, want SGX alone", len(r))
	}
	anyOf, ok := r[attest.SGX].(attest.AnyOf)
	if !ok || len(anyOf) != 2 {
		t.Fatalf("SGX verifier %T, want AnyOf of the simulated platform and Intel", r[attest.SGX])
	}
	if _, ok := anyOf[1].(*sgx.IntelVerifier); !ok {
		t.Errorf("second SGX verifier %T, want Intel's", anyOf[1])
	}
	quote, err := plat.Quote(sim.Enclave{ISVSVN: 3}, [64]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := r.Verify(context.Background(), attest.SGX, quote, time.Now())
	if err != nil || *claims.ISVSVN != 3 || claims.Platform != "simulated" {
		t.Fatalf("simulated quote: %+v, %v", claims, err)
	}
	if _, err := anyOf[1].Verify(context.Background(), quote, time.Now()); !errors.Is(err, attest.ErrUntrustedRoot) {
		t.Errorf("Intel's verifier on a simulated quote: %v, want an untrusted root", err)
	}
	if _, err := r.Verify(context.Background(), attest.TDX, quote, time.Now()); !errors.Is(err, attest.ErrUnknownKind) {
		t.Errorf("TDX without tdx_collateral: %v", err)
	}

	empty, err := (&trust.Settings{}).Registry()
	if err != nil || len(empty) != 0 {
		t.Errorf("empty settings: %v, %v", empty, err)
	}
	snp, err := (&trust.Settings{SNP: true}).Registry()
	if err != nil || snp[attest.SNP] == nil || len(snp) != 1 {
		t.Errorf("snp = true: %v, %v", snp, err)
	}
}

// TestRegistryErrors: a setting that cannot be used fails the whole registry, naming it.
func TestRegistryErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nowhere")
	for name, s := range map[string]trust.Settings{
		"simulated platform": {SimPlatforms: []string{missing}},
		"TDX collateral":     {TDXCollateral: missing},
		"SNP certificate":    {SNP: true, SNPCertificates: []string{missing}},
	} {
		if _, err := s.Registry(); err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("%s: %v, want an error naming %s", name, err, missing)
		}
	}
}

// TestRegistryTDX: a simulated TDX platform's verifier comes before Intel's for TDX quotes; a
// genuine TD's quote goes past the simulated platform, which refuses it as from another root, to
// Intel's verifier.
func TestRegistryTDX(t *testing.T) {
	plat, err := sim.InitTDX(filepath.Join(t.TempDir(), "td"), sim.TDOptions{}, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := testfiles.CollateralDir(t, t.TempDir(), "tdx/oasis-core/tcb_info_v3_tdx_fmspc_C0806F000000.json", "tdx/oasis-core/qe_identity_v2_tdx2.json")
	r, err := (&trust.Settings{SimPlatforms: []string{plat.Dir}, TDXCollateral: dir, SkipCRL: true}).Registry()
	if err != nil {
		t.Fatal(err)
	}
	if anyOf, ok := r[attest.TDX].(attest.AnyOf); !ok || len(anyOf) != 2 || r[attest.SGX] != nil {
		t.Fatalf("registry %v, want TDX alone, the simulated platform and Intel", r)
	}
	quote, err := plat.TDQuote([64]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := r.Verify(context.Background(), attest.TDX, quote, time.Now())
	if err != nil || claims.Platform != attest.Simulated || claims.MRTD.String() != fmt.Sprintf("%x", sim.DefaultMRTD) {
		t.Fatalf("simulated TD quote: %+v, %v", claims, err)
	}
	genuine, err := os.ReadFile(filepath.Join(testfiles.Attestation, "tdx/oasis-core/quote_v4_tdx_ecdsa_p256.bin"))
	if err != nil {
		t.Fatal(err)
	}
	// The recorded collateral has expired by now: Intel's verifier is the one that says so.
	if _, err := r.Verify(context.Background(), attest.TDX, genuine, time.Now()); err == nil || errors.Is(err, attest.ErrUntrustedRoot) {
		t.Errorf("genuine TD quote: %v, want Intel's verifier's refusal", err)
	}
}
