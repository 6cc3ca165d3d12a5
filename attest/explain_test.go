package attest

import (
	"strings"
	"testing"
)

// TestSNPExplanation: a SEV-SNP status is explained in AMD's terms, with the reasons the verifier
// gave, never in Intel's.
func TestSNPExplanation(t *testing.T) {
	reason := "REPORTED_TCB (bootloader 3, tee 0, snp 8, microcode 115) is below CURRENT_TCB (bootloader 3, tee 0, snp 8, microcode 206): " +
		"the report's key vouches only for the older TCB; the host should report its current TCB and serve the VCEK of that TCB"
	c := &Claims{TEE: SNP, TCBStatus: "ConfigurationNeeded", SNP: &SNPClaims{StatusReasons: []string{reason}}}
	want := "ConfigurationNeeded: the platform runs a newer TCB than AMD's key vouches for, or provisional firmware: " +
		"its operator can fix that without an update; " + reason
	if got := c.TCBExplanation(); got != want {
		t.Errorf("explanation\n%s\nwant\n%s", got, want)
	}
	c.TCBStatus, c.SNP.StatusReasons = "UpToDate", nil
	if got := c.TCBExplanation(); strings.Contains(got, "collateral") || !strings.Contains(got, "AMD's key vouches for the TCB the platform runs") {
		t.Errorf("UpToDate SEV-SNP explained as %q", got)
	}
}

// TestTCBExplanation checks that each kind of component behind names what to update, and that
// the status, the module's and the QE's statuses and the advisories are said.
func TestTCBExplanation(t *testing.T) {
	c := &Claims{
		TCBStatus: "OutOfDate", AdvisoryIDs: []string{"INTEL-SA-00837"}, QEStatus: "OutOfDate",
		TDXModule: &TDXModule{ID: "TDX_01", ISVSVN: 2, Status: "OutOfDate"},
		Behind: []Behind{
			{Component: "sgx", Index: 1, Name: "BIOS Early Microcode Update", Platform: 2, Level: 3},
			{Component: "sgx", Index: 2, Name: "OS/VMM SGX Late Microcode Update", Platform: 1, Level: 2},
			{Component: "pce", Name: "PCE", Platform: 11, Level: 13},
			{Component: "tdx", Index: 2, Name: "OS/VMM TDX Late Microcode Update", Platform: 2, Level: 3},
			{Component: "tdx", Index: 0, Name: "OS/VMM TDX Module", Platform: 3, Level: 5},
			{Component: "tdx_module", Name: "TDX_01", Platform: 2, Level: 4},
			{Component: "qe", Name: "TD_QE", Platform: 4, Level: 5},
		},
	}
	got := c.TCBExplanation()
	for _, want := range []string{
		"OutOfDate: the platform has known vulnerabilities that an update fixes",
		"TDX module TDX_01 ISVSVN 2 is OutOfDate",
		"the Quoting Enclave is OutOfDate",
		"SGX TCB component 1 (BIOS Early Microcode Update) is 2, the newest level has 3: update the BIOS (which carries the CPU microcode)",
		"SGX TCB component 2 (OS/VMM SGX Late Microcode Update) is 1, the newest level has 2: update the CPU microcode",
		"PCE SVN is 11, the newest level has 13: update the host's SGX DCAP packages (the PCE)",
		"TDX TCB component 2 (OS/VMM TDX Late Microcode Update) is 2, the newest level has 3: update the CPU microcode",
		"TDX TCB component 0 (OS/VMM TDX Module) is 3, the newest level has 5: update the TDX module, then relaunch the TD",
		"TDX module ISVSVN (TDX_01) is 2, the newest level has 4: update the host's TDX module, then relaunch the TD",
		"Quoting Enclave ISVSVN (TD_QE) is 4, the newest level has 5: update the host's DCAP quote generation packages (the QE)",
		"advisories INTEL-SA-00837",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("explanation\n%s\nlacks %q", got, want)
		}
	}
	if got := (&Claims{TCBStatus: "UpToDate"}).TCBExplanation(); got != "UpToDate: the platform is as up to date as the collateral knows" {
		t.Errorf("UpToDate: %q", got)
	}
}
