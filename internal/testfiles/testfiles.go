// Package testfiles reads the repository's test files for tests: Gramine's protected-file
// vectors and the recorded attestation evidence and collateral under testdata.
package testfiles

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Attestation is the absolute path of testdata/attestation, whatever folder a test runs in.
var Attestation = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "attestation")
}()

// Read returns the contents of the file at path, failing t if it cannot be read.
func Read(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// CollateralDir writes a collateral folder at dir (which it makes) from a TCB info and a QE
// identity of testdata/attestation, given by their paths under it, both signed by Intel's TCB
// signing certificate in oasis-core's chain. It returns dir.
func CollateralDir(t testing.TB, dir, tcbInfo, qeIdentity string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	chain := "sgx/oasis-core/tcb_info_v3_fmspc_00606A000000_certs.pem"
	for dst, src := range map[string]string{
		"tcb-info.json": tcbInfo, "qe-identity.json": qeIdentity,
		"tcb-info-issuer-chain.pem": chain, "qe-identity-issuer-chain.pem": chain,
	} {
		if err := os.WriteFile(filepath.Join(dir, dst), Read(t, filepath.Join(Attestation, src)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
