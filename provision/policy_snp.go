package provision

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ppml/ppml/attest"
)

// SNPWorkload is the SEV-SNP part of a [Workload] (tee = "snp"). It must name a minimum TCB;
// otherwise its zero value requires VMPL 0 and no minimum firmware.
type SNPWorkload struct {
	// MinTCB is the TCB a workload considers up to date: a report whose REPORTED_TCB (what its key
	// vouches for) or LAUNCH_TCB (what the guest was launched under) is below it in any part has
	// the status OutOfDate (OutOfDateConfigurationNeeded if it was ConfigurationNeeded), which
	// accept_tcb must list to be admitted. Required: SEV-SNP evidence has no TCB status of its
	// own beyond what the firmware says of itself, so without it any old TCB would be UpToDate;
	// min_tcb = {} admits any, said explicitly.
	MinTCB *SNPMinTCB `toml:"min_tcb"`
	// MinFirmware is the oldest SEV firmware admitted, "MAJOR.MINOR.BUILD" (as 1.55.29), compared
	// with the committed firmware: the current one can be rolled back to it.
	MinFirmware string `toml:"min_firmware"`
	// VMPL is the VM privilege level the report must come from; nil means 0, the guest kernel's
	// where no SVSM or paravisor runs beneath it.
	VMPL *uint32 `toml:"vmpl"`
	// HostData, if given, lists the HOSTDATA values admitted (32 bytes in hex each), such as the
	// digest of the init data the guest checks.
	HostData []string `toml:"host_data"`

	minFirmware attest.SNPFirmware
}

// SNPMinTCB is a minimum TCB by part; a part left out is not constrained. FMC applies to Turin
// and later only, whose TCB has that part.
type SNPMinTCB struct {
	FMC        uint8 `toml:"fmc"`
	Bootloader uint8 `toml:"bootloader"`
	TEE        uint8 `toml:"tee"`
	SNP        uint8 `toml:"snp"`
	Microcode  uint8 `toml:"microcode"`
}

// checkSNP validates the SEV-SNP settings of a workload of TEE tee.
func (s *SNPWorkload) checkSNP(tee string) error {
	if tee != string(attest.SNP) {
		if s.MinTCB != nil || s.MinFirmware != "" || s.VMPL != nil || len(s.HostData) > 0 {
			return errors.New(`min_tcb, min_firmware, vmpl and host_data are for tee = "snp"`)
		}
		return nil
	}
	if s.MinTCB == nil {
		return errors.New(`tee = "snp" needs min_tcb, the oldest TCB the workload considers up to date, as min_tcb = {bootloader = 10, tee = 0, snp = 23, microcode = 213} (the parts of a patched platform's REPORTED_TCB, which ppml quote verify shows; min_tcb = {} admits any TCB)`)
	}
	if s.VMPL != nil && *s.VMPL > 3 {
		return fmt.Errorf("vmpl %d is not one of 0 to 3", *s.VMPL)
	}
	if s.MinFirmware != "" {
		f := &s.minFirmware
		if n, err := fmt.Sscanf(s.MinFirmware, "%d.%d.%d", &f.Major, &f.Minor, &f.Build); err != nil || n != 3 || f.String() != s.MinFirmware {
			return fmt.Errorf("min_firmware %q is not MAJOR.MINOR.BUILD (as 1.55.29)", s.MinFirmware)
		}
	}
	return nil
}

// admitsSNP checks the SEV-SNP constraints of a workload on claims c and returns the TCB status
// that accept_tcb judges, with why it is not UpToDate.
func (s *SNPWorkload) admitsSNP(c *attest.Claims) (status, why string, err error) {
	r := c.SNP
	if r == nil {
		return "", "", errors.New("the evidence carries no SEV-SNP report fields")
	}
	want := uint32(0)
	if s.VMPL != nil {
		want = *s.VMPL
	}
	if r.VMPL != want {
		return "", "", fmt.Errorf("VMPL %d is not %d (vmpl)", r.VMPL, want)
	}
	if len(s.HostData) > 0 && !slices.ContainsFunc(s.HostData, func(h string) bool { return hexEqual(h, r.HostData) }) {
		return "", "", fmt.Errorf("host_data %s is not one allowed", r.HostData)
	}
	if s.MinFirmware != "" && r.CommittedFirmware.Less(s.minFirmware) {
		return "", "", fmt.Errorf("committed firmware %s is below min_firmware %s", r.CommittedFirmware, s.minFirmware)
	}
	status, why = c.TCBStatus, strings.Join(r.StatusReasons, "; ")
	var below []string
	for _, t := range []struct {
		name string
		tcb  attest.SNPTCB
	}{{"REPORTED_TCB", r.ReportedTCB}, {"LAUNCH_TCB", r.LaunchTCB}} {
		for _, part := range s.MinTCB.below(t.tcb) {
			below = append(below, t.name+" "+part)
		}
	}
	if len(below) == 0 {
		return status, why, nil
	}
	why = strings.Join(below, ", ")
	if status == "ConfigurationNeeded" {
		return "OutOfDateConfigurationNeeded", why + "; " + strings.Join(r.StatusReasons, "; "), nil
	}
	return "OutOfDate", why, nil
}

// below names the parts of t below m, as "microcode 115 < min_tcb 200".
func (m *SNPMinTCB) below(t attest.SNPTCB) []string {
	var parts []string
	check := func(name string, got, want uint8) {
		if got < want {
			parts = append(parts, fmt.Sprintf("%s %d < min_tcb %d", name, got, want))
		}
	}
	if t.FMC != nil {
		check("fmc", *t.FMC, m.FMC)
	}
	check("bootloader", t.Bootloader, m.Bootloader)
	check("tee", t.TEE, m.TEE)
	check("snp", t.SNP, m.SNP)
	check("microcode", t.Microcode, m.Microcode)
	return parts
}
