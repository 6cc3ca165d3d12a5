package collateral

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ppml/ppml/internal/testfiles"
)

const testdata = "../testdata/attestation/sgx/"

func read(t testing.TB, name string) []byte {
	return testfiles.Read(t, filepath.Join(testdata, name))
}

// mobilecoin is a complete bundle of real collateral (SGX-2 in the testdata README).
func mobilecoin(t *testing.T) *Bundle {
	return &Bundle{
		TCBInfo:               read(t, "mobilecoin-attestation/fmspc_00906ED50000_2023_07_12.json"),
		TCBInfoIssuerChain:    read(t, "mobilecoin-attestation/tcb_signer.pem"),
		QEIdentity:            read(t, "mobilecoin-attestation/qe_identity.json"),
		QEIdentityIssuerChain: read(t, "mobilecoin-attestation/tcb_signer.pem"),
		PCKCRL:                read(t, "mobilecoin-attestation/processor_crl.der"),
		PCKCRLIssuerChain:     read(t, "mobilecoin-attestation/processor_ca.pem"),
		RootCACRL:             read(t, "mobilecoin-attestation/root_crl.der"),
	}
}

func equal(a, b *Bundle) bool {
	for i, f := range a.fields() {
		if !bytes.Equal(*f.data, *b.fields()[i].data) {
			return false
		}
	}
	return true
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	want := mobilecoin(t)
	if err := want.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	for _, fmspc := range []string{"", "00906ED50000"} {
		got, err := ReadDir(dir, fmspc)
		if err != nil {
			t.Fatal(err)
		}
		if !equal(got, want) {
			t.Errorf("fmspc %q: bundle changed on the way through %s", fmspc, dir)
		}
	}
}

func TestOptionalCRLs(t *testing.T) {
	dir := t.TempDir()
	b := mobilecoin(t)
	b.PCKCRL, b.PCKCRLIssuerChain, b.RootCACRL = nil, nil, nil
	if err := b.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, PCKCRLFile)); !os.IsNotExist(err) {
		t.Errorf("empty PCK CRL written: %v", err)
	}
	got, err := ReadDir(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if !equal(got, b) {
		t.Error("bundle without CRLs changed on the way")
	}
}

func TestFMSPCFile(t *testing.T) {
	dir := t.TempDir()
	if err := mobilecoin(t).WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	other := read(t, "oasis-core/tcb_info_v3_fmspc_00606A000000.json")
	if err := os.WriteFile(filepath.Join(dir, TCBInfoFileFor("00606A000000")), other, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := TCBInfoFileFor("00606A000000"); got != "tcb-info-00606a000000.json" {
		t.Errorf("TCBInfoFileFor = %s", got)
	}
	b, err := ReadDir(dir, "00606A000000")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.TCBInfo, other) {
		t.Error("the FMSPC's own TCB info was not preferred")
	}
	b, err = ReadDir(dir, "00906ED50000") // no file of its own: the generic one
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.TCBInfo, mobilecoin(t).TCBInfo) {
		t.Error("tcb-info.json not used")
	}
}

func TestReadDirErrors(t *testing.T) {
	for _, missing := range []string{TCBInfoFile, TCBInfoIssuerChainFile, QEIdentityFile, QEIdentityIssuerChainFile, PCKCRLIssuerChainFile} {
		dir := t.TempDir()
		if err := mobilecoin(t).WriteDir(dir); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(dir, missing))
		_, err := ReadDir(dir, "")
		if err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("without %s: got %v, want an error naming it", missing, err)
		}
	}
	dir := t.TempDir()
	if err := mobilecoin(t).WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, QEIdentityFile), nil, 0o644)
	if _, err := ReadDir(dir, ""); err == nil || !strings.Contains(err.Error(), QEIdentityFile) {
		t.Errorf("empty %s: got %v", QEIdentityFile, err)
	}
	if _, err := ReadDir(filepath.Join(dir, "nope"), ""); err == nil {
		t.Error("read a folder that does not exist")
	}
}

func TestWriteDirIncomplete(t *testing.T) {
	b := mobilecoin(t)
	b.QEIdentityIssuerChain = nil
	err := b.WriteDir(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), QEIdentityIssuerChainFile) {
		t.Errorf("got %v, want an error naming %s", err, QEIdentityIssuerChainFile)
	}
}
