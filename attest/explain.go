package attest

import (
	"fmt"
	"strings"
)

// statusMeaning says what each TCB status means for the operator of the platform.
var statusMeaning = map[string]string{
	"UpToDate":                          "the platform is as up to date as the collateral knows",
	"SWHardeningNeeded":                 "the platform is up to date, but the advisories need mitigations in the workload's software",
	"ConfigurationNeeded":               "the platform is up to date, but its BIOS configuration leaves it open to the advisories",
	"ConfigurationAndSWHardeningNeeded": "the platform is up to date, but its BIOS configuration and the workload's software need changes against the advisories",
	"OutOfDate":                         "the platform has known vulnerabilities that an update fixes",
	"OutOfDateConfigurationNeeded":      "the platform has known vulnerabilities that an update and a BIOS configuration change fix",
	"TDRelaunchAdvised":                 "the TDX module was updated after the TD was launched: relaunch the TD to run on the up-to-date module",
	"TDRelaunchAdvisedConfigurationNeeded": "the TDX module was updated after the TD was launched: relaunch the TD, " +
		"and change the BIOS configuration against the advisories",
}

// snpStatusMeaning says what each TCB status of a SEV-SNP report means (attest/snp gives the
// first two, a policy's min_tcb the others; docs/attestation.md has the mapping).
var snpStatusMeaning = map[string]string{
	"UpToDate":            "AMD's key vouches for the TCB the platform runs, and its firmware is committed",
	"ConfigurationNeeded": "the platform runs a newer TCB than AMD's key vouches for, or provisional firmware: its operator can fix that without an update",
	"OutOfDate":           "the platform's TCB is below the policy's minimum: update the SEV firmware and the microcode, then relaunch the guest",
	"OutOfDateConfigurationNeeded": "the platform's TCB is below the policy's minimum, and it runs a newer TCB than AMD's key vouches for " +
		"or provisional firmware: update the SEV firmware and the microcode, then relaunch the guest",
}

// TCBExplanation says in words what the TCB status means, which components are behind the newest
// TCB level and what to update, and which advisories apply, or for SEV-SNP why the status is not
// UpToDate and what the host's operator can do: one line, for a person to act on (ppml quote
// verify, the audit log).
func (c *Claims) TCBExplanation() string {
	parts := []string{c.TCBStatus}
	meaning := statusMeaning
	if c.SNP != nil {
		meaning = snpStatusMeaning
	}
	if m := meaning[c.TCBStatus]; m != "" {
		parts[0] += ": " + m
	}
	if c.SNP != nil {
		parts = append(parts, c.SNP.StatusReasons...)
	}
	if m := c.TDXModule; m != nil && m.Status != "UpToDate" {
		parts = append(parts, fmt.Sprintf("TDX module %s ISVSVN %d is %s", m.ID, m.ISVSVN, m.Status))
	}
	if c.QEStatus != "" && c.QEStatus != "UpToDate" {
		parts = append(parts, "the Quoting Enclave is "+c.QEStatus)
	}
	for _, b := range c.Behind {
		parts = append(parts, b.explain())
	}
	if len(c.AdvisoryIDs) > 0 {
		parts = append(parts, "advisories "+strings.Join(c.AdvisoryIDs, ", ")+" (https://www.intel.com/content/www/us/en/security-center/default.html)")
	}
	return strings.Join(parts, "; ")
}

// explain says what is behind and what to update.
func (b *Behind) explain() string {
	var what, update string
	switch b.Component {
	case "sgx":
		what = fmt.Sprintf("SGX TCB component %d", b.Index)
		update = "update the BIOS (which carries the CPU microcode)"
		if strings.Contains(b.Name, "Late Microcode") {
			update = "update the CPU microcode"
		}
	case "pce":
		what, update = "PCE SVN", "update the host's SGX DCAP packages (the PCE)"
	case "tdx":
		what = fmt.Sprintf("TDX TCB component %d", b.Index)
		update = "update the BIOS and the TDX firmware"
		switch {
		case strings.Contains(b.Name, "TDX Module"):
			update = "update the TDX module, then relaunch the TD"
		case strings.Contains(b.Name, "Microcode"):
			update = "update the CPU microcode"
		}
	case "tdx_module":
		what, update = "TDX module ISVSVN", "update the host's TDX module, then relaunch the TD"
	case "qe":
		what, update = "Quoting Enclave ISVSVN", "update the host's DCAP quote generation packages (the QE)"
	default:
		what, update = b.Component+" component", "update it"
	}
	if b.Name != "" && b.Component != "pce" {
		what += " (" + b.Name + ")"
	}
	return fmt.Sprintf("%s is %d, the newest level has %d: %s", what, b.Platform, b.Level, update)
}
