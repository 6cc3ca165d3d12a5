package cvm_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/cvm"
	"github.com/ppml/ppml/attest/sim"
)

var measurement = sha256.Sum256([]byte("app.manifest"))

// TestCheckLaunch checks the launch binding on simulated TDX platforms (quotes v4 and v5): a TD
// launched for the manifest passes, one launched for another refuses, one launched without an
// MRCONFIGID passes.
func TestCheckLaunch(t *testing.T) {
	other := sha256.Sum256([]byte("other.manifest"))
	for _, tc := range []struct {
		name    string
		version int
		config  [48]byte
		want    error
	}{
		{"v4, bound", 4, cvm.MRConfigID(measurement), nil},
		{"v5, bound", 5, cvm.MRConfigID(measurement), nil},
		{"v4, another workload", 4, cvm.MRConfigID(other), cvm.ErrLaunchBinding},
		{"v5, another workload", 5, cvm.MRConfigID(other), cvm.ErrLaunchBinding},
		{"v4, unbound", 4, [48]byte{}, nil},
	} {
		p, err := sim.InitTDX(filepath.Join(t.TempDir(), "td"), sim.TDOptions{QuoteVersion: tc.version, MRConfigID: tc.config}, "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		err = cvm.CheckLaunch(p.TDAttester(), measurement)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if tc.want != nil && !strings.Contains(err.Error(), "ppml manifest measure --mrconfigid") {
			t.Errorf("%s: %v does not say what to do", tc.name, err)
		}
		quote, _ := p.TDQuote([64]byte{})
		if got, err := cvm.LaunchConfig(attest.TDX, quote); err != nil || !bytes.Equal(got, tc.config[:]) {
			t.Errorf("%s: LaunchConfig = %x, %v", tc.name, got, err)
		}
	}
}

// TestCheckLaunchSNP checks the launch binding on a simulated SEV-SNP platform.
func TestCheckLaunchSNP(t *testing.T) {
	p, err := sim.InitSNP(filepath.Join(t.TempDir(), "snp"), sim.SNPOptions{HostData: cvm.HostData(measurement)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := cvm.CheckLaunch(p.Attester(), measurement); err != nil {
		t.Errorf("bound guest: %v", err)
	}
	if err := cvm.CheckLaunch(p.Attester(), sha256.Sum256(nil)); !errors.Is(err, cvm.ErrLaunchBinding) || !strings.Contains(err.Error(), "--hostdata") {
		t.Errorf("guest of another workload: %v", err)
	}
}

func TestLaunchConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		kind     attest.Kind
		evidence []byte
		want     string
	}{
		{attest.TDX, make([]byte, 10), "shorter than its header"},
		{attest.TDX, append([]byte{4, 0, 2, 0, 0, 0, 0, 0}, make([]byte, 600)...), "not a TD's"},
		{attest.TDX, append([]byte{3, 0, 2, 0, 0x81, 0, 0, 0}, make([]byte, 600)...), "version 3"},
		{attest.TDX, append([]byte{5, 0, 2, 0, 0x81, 0, 0, 0}, make([]byte, 100)...), "too short"},
		{attest.SNP, make([]byte, 100), "SEV-SNP report of 100 bytes"},
		{attest.SGX, make([]byte, 1000), "carries no launch configuration"},
	} {
		if _, err := cvm.LaunchConfig(tc.kind, tc.evidence); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %x...: %v, want %q", tc.kind, tc.evidence[:8], err, tc.want)
		}
	}
}

func FuzzLaunchConfig(f *testing.F) {
	p, err := sim.InitTDX(filepath.Join(f.TempDir(), "td"), sim.TDOptions{QuoteVersion: 5}, "", time.Now())
	if err != nil {
		f.Fatal(err)
	}
	quote, err := p.TDQuote([64]byte{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(true, quote)
	f.Add(false, make([]byte, 0x4a0))
	f.Fuzz(func(t *testing.T, tdx bool, evidence []byte) {
		kind := attest.SNP
		if tdx {
			kind = attest.TDX
		}
		got, err := cvm.LaunchConfig(kind, evidence)
		if err == nil && len(got) != map[attest.Kind]int{attest.TDX: 48, attest.SNP: 32}[kind] {
			t.Errorf("%s launch configuration of %d bytes", kind, len(got))
		}
	})
}
