package trust_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
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
	if len(r) != 2 || r[attest.TDX] == nil {
		t.Fatalf("registry has %d kinds, want SGX and TDX (Intel's collateral serves both)", len(r))
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
	simOnly, err := (&trust.Settings{SimPlatforms: []string{plat.Dir}}).Registry()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := simOnly.Verify(context.Background(), attest.TDX, quote, time.Now()); !errors.Is(err, attest.ErrUnknownKind) {
		t.Errorf("TDX without collateral: %v", err)
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
		"collateral":         {Collateral: missing},
		"TDX collateral":     {TDXCollateral: missing},
		"SNP certificate":    {SNP: true, SNPCertificates: []string{missing}},
		"SNP CRL folder":     {SNP: true, SNPCRL: missing},
	} {
		if _, err := s.Registry(); err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("%s: %v, want an error naming %s", name, err, missing)
		}
	}
}

// TestRegistrySNPCRL: snp_crl's folder must hold CRLs that AMD's ARKs signed: an empty one, or one
// with Intel's CRL, is refused, naming the folder or the file.
func TestRegistrySNPCRL(t *testing.T) {
	dir := t.TempDir()
	if _, err := (&trust.Settings{SNP: true, SNPCRL: dir}).Registry(); err == nil || !strings.Contains(err.Error(), "snp_crl: "+dir+" holds no CRL") {
		t.Errorf("empty folder: %v", err)
	}
	os.WriteFile(filepath.Join(dir, ".hidden"), []byte("not a CRL"), 0o600)
	intel := filepath.Join(dir, "rootcrl.der")
	os.WriteFile(intel, testfiles.Read(t, "../../testdata/attestation/tdx/go-tdx-guest/rootcrl.der"), 0o600)
	_, err := (&trust.Settings{SNP: true, SNPCRL: dir}).Registry()
	if err == nil || !strings.Contains(err.Error(), "AMD CRL "+intel+` (issuer "Intel SGX Root CA") is not signed by the ARK of any trusted product line`) {
		t.Errorf("Intel's CRL: %v", err)
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

// TestCollateralFromPCCS: with collateral naming a PCCS, TDX quotes verify as SGX quotes do, with
// the collateral fetched from it into ppml's cache, under the TDX path of the PCS API, once per
// platform until the collateral's next update. Set TDX-11 of testdata/attestation.
func TestCollateralFromPCCS(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	set := tdxSet(t, "TDX-11")
	log := filepath.Join(t.TempDir(), "pccs.log")
	pccs := httptest.NewServer(testfiles.PCCS(set.CollateralDir(t, t.TempDir()), log))
	defer pccs.Close()
	r, err := (&trust.Settings{Collateral: pccs.URL}).Registry()
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		claims, err := r.Verify(context.Background(), attest.TDX, set.ReadQuote(t), set.At)
		if err != nil {
			t.Fatal(err)
		}
		if claims.TCBStatus != set.Status || claims.TDXModule == nil || claims.Platform != attest.Intel {
			t.Errorf("claims: %s, module %v, platform %s; want %s from Intel", claims.TCBStatus, claims.TDXModule, claims.Platform, set.Status)
		}
	}
	requests := strings.Fields(string(testfiles.Read(t, log)))
	if len(requests) != 4 || requests[0] != "/tdx/certification/v4/tcb?fmspc=90C06F000000" || requests[1] != "/tdx/certification/v4/qe/identity" {
		t.Errorf("PCCS requests %q, want the TDX TCB info and TD_QE identity once, and the CRLs", requests)
	}
	if _, err := os.Stat(filepath.Join(cache, "ppml/collateral/tdx/90c06f000000/platform/qe-identity.json")); err != nil {
		t.Errorf("not cached: %v", err)
	}
}

// TestTDXCollateral: tdx_collateral gives TDX platforms collateral of their own beside the SGX
// platforms' collateral.
func TestTDXCollateral(t *testing.T) {
	set := tdxSet(t, "TDX-1")
	sgxDir := testfiles.CollateralDir(t, t.TempDir(), "sgx/oasis-core/tcb_info_v3_fmspc_00606A000000.json", "sgx/oasis-core/qe_identity_v2.json")
	both, err := (&trust.Settings{Collateral: sgxDir, TDXCollateral: set.CollateralDir(t, t.TempDir()), SkipCRL: true}).Registry()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := both.Verify(context.Background(), attest.TDX, set.ReadQuote(t), set.At); err != nil {
		t.Errorf("TDX quote: %v", err)
	}
	sgxQuote := testfiles.Read(t, filepath.Join(testfiles.Attestation, "sgx/oasis-core/quote_v3_ecdsa_p256_pck_chain.bin"))
	if _, err := both.Verify(context.Background(), attest.SGX, sgxQuote, time.Unix(1671497404, 0)); err != nil {
		t.Errorf("SGX quote: %v", err)
	}
	// The SGX folder alone serves no TDX quote: its QE identity is the SGX QE's.
	sgxOnly, err := (&trust.Settings{Collateral: sgxDir, SkipCRL: true}).Registry()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sgxOnly.Verify(context.Background(), attest.TDX, set.ReadQuote(t), set.At); err == nil || !strings.Contains(err.Error(), "TD_QE") {
		t.Errorf("TDX quote against SGX collateral: %v, want the QE identity refused", err)
	}
}

func tdxSet(t *testing.T, name string) testfiles.TDXSet {
	for _, s := range testfiles.TDXSets() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no TDX set %s", name)
	return testfiles.TDXSet{}
}
