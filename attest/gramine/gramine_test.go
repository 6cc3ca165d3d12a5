package gramine

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sim"
)

// fakeDevice is a stand-in for Gramine's /dev/attestation: quote holds a quote that a simulated
// platform makes over whatever user_report_data holds, as Gramine does when quote is opened.
type fakeDevice struct {
	dir string
	p   *sim.Platform
}

func newFakeDevice(t *testing.T, typ string) *fakeDevice {
	dir := t.TempDir()
	p, err := sim.Init(filepath.Join(t.TempDir(), "sim"), "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "attestation_type"), []byte(typ), 0o444)
	os.WriteFile(filepath.Join(dir, "user_report_data"), make([]byte, 64), 0o644)
	return &fakeDevice{dir, p}
}

// makeQuote plays Gramine's part after the write: it makes the quote file.
func (d *fakeDevice) makeQuote(t *testing.T) {
	rd, err := os.ReadFile(filepath.Join(d.dir, "user_report_data"))
	if err != nil || len(rd) != 64 {
		t.Fatalf("user_report_data: %d bytes, %v", len(rd), err)
	}
	q, err := d.p.Quote(sim.Enclave{ISVProdID: 1}, [64]byte(rd))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d.dir, "quote"), q, 0o444)
}

func TestAttest(t *testing.T) {
	d := newFakeDevice(t, "dcap")
	var rd attest.ReportData
	copy(rd[:], "bind me")
	// Write the report data as Attest will, make the quote, then attest for real.
	os.WriteFile(filepath.Join(d.dir, "user_report_data"), rd[:], 0o644)
	d.makeQuote(t)
	a := Attester{Dir: d.dir}
	quote, err := a.Attest(rd)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(d.dir, "user_report_data"))
	if !bytes.Equal(got, rd[:]) {
		t.Errorf("user_report_data holds %x", got)
	}
	v, err := d.p.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	claims, err := v.Verify(context.Background(), quote, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(claims.ReportData, rd[:]) {
		t.Errorf("quote binds %x", claims.ReportData)
	}
	if a.Kind() != attest.SGX {
		t.Errorf("kind %s", a.Kind())
	}
}

func TestAttestErrors(t *testing.T) {
	if _, err := (Attester{Dir: t.TempDir()}).Attest(attest.ReportData{}); err == nil || !strings.Contains(err.Error(), "not running inside Gramine SGX") {
		t.Errorf("no device: %v", err)
	}
	d := newFakeDevice(t, "none")
	if _, err := (Attester{Dir: d.dir}).Attest(attest.ReportData{}); err == nil || !strings.Contains(err.Error(), `sgx.remote_attestation = "dcap"`) {
		t.Errorf("type none: %v", err)
	}
	d = newFakeDevice(t, "dcap")
	if _, err := (Attester{Dir: d.dir}).Attest(attest.ReportData{}); err == nil {
		t.Error("no quote file: no error")
	}
	os.WriteFile(filepath.Join(d.dir, "quote"), make([]byte, maxQuote+1), 0o444)
	if _, err := (Attester{Dir: d.dir}).Attest(attest.ReportData{}); err == nil || !strings.Contains(err.Error(), "Gramine's quote is 8193 bytes") {
		t.Errorf("oversized quote: %v", err)
	}
}
