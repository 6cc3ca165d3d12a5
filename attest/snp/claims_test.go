package snp

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	sevtest "github.com/google/go-sev-guest/testing"
)

// Offsets of the TCB fields of an attestation report.
const (
	offCurrentTCB     = 0x38
	offVMPL           = 0x30
	offReportedTCB    = 0x180
	offCommittedTCB   = 0x1E0
	offCurrentBuild   = 0x1E8
	offCommittedBuild = 0x1EC
	offLaunchTCB      = 0x1F0
)

// tcbSigner is go-sev-guest's fake AMD Secure Processor whose VCEK is for the TCB parts.
func tcbSigner(t *testing.T, parts kds.TCBParts) *sevtest.AmdSigner {
	b := &sevtest.AmdSignerBuilder{
		Keys: sevtest.DefaultAmdKeys(), ProductName: "Milan-B1", CSPID: "go-sev-guest",
		ArkCreationTime: fakeTime, AskCreationTime: fakeTime, AsvkCreationTime: fakeTime, VcekCreationTime: fakeTime, VlekCreationTime: fakeTime,
		VcekCustom: sevtest.CertOverride{Extensions: sevtest.CustomExtensions(parts, make([]byte, abi.ChipIDSize), "", "Milan-B1")},
	}
	s, err := b.TestOnlyCertChain()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTCBStatus checks the status that the reported, current and committed TCBs and firmware
// give, with reports that the fake signer signs with a VCEK of TCB bootloader 2, snp 5,
// microcode 9, which every report reports.
func TestTCBStatus(t *testing.T) {
	vcekTCB, err := kds.ComposeTCBParts(kds.TCBParts{BlSpl: 2, SnpSpl: 5, UcodeSpl: 9})
	if err != nil {
		t.Fatal(err)
	}
	s := tcbSigner(t, kds.DecomposeTCBVersion(vcekTCB))
	table := certTable(t, s)
	tcb := func(r []byte, off int, ucode uint64) {
		binary.LittleEndian.PutUint64(r[off:], uint64(vcekTCB)&^(0xff<<56)|ucode<<56)
	}
	for _, tc := range []struct {
		name    string
		alter   func(r []byte)
		status  string
		reasons []string // the start of each, or of the error
	}{
		{"all the same", func([]byte) {}, UpToDate, nil},
		{"launched under an older TCB", func(r []byte) { tcb(r, offLaunchTCB, 3) }, UpToDate, nil},
		{"microcode newer than reported and committed", func(r []byte) { tcb(r, offCurrentTCB, 10) }, ConfigurationNeeded,
			[]string{"REPORTED_TCB (bootloader 2, tee 0, snp 5, microcode 9) is below CURRENT_TCB (bootloader 2, tee 0, snp 5, microcode 10)",
				"the firmware is provisional (committed 0.0.0 with TCB bootloader 2, tee 0, snp 5, microcode 9, current 0.0.0 with TCB bootloader 2, tee 0, snp 5, microcode 10)"}},
		{"committed and reported below current", func(r []byte) { tcb(r, offCurrentTCB, 10); tcb(r, offCommittedTCB, 10) }, ConfigurationNeeded,
			[]string{"REPORTED_TCB (bootloader 2, tee 0, snp 5, microcode 9) is below CURRENT_TCB"}},
		{"firmware not committed", func(r []byte) { r[offCurrentBuild] = 7; r[offCommittedBuild] = 6 }, ConfigurationNeeded,
			[]string{"the firmware is provisional (committed 0.0.6 with TCB bootloader 2, tee 0, snp 5, microcode 9, current 0.0.7 with"}},
		{"reported above current", func(r []byte) { tcb(r, offCurrentTCB, 8); tcb(r, offCommittedTCB, 8) }, "",
			[]string{"REPORTED_TCB (bootloader 2, tee 0, snp 5, microcode 9) is above CURRENT_TCB (bootloader 2, tee 0, snp 5, microcode 8)"}},
		{"reported is not the VCEK's", func(r []byte) { tcb(r, offReportedTCB, 8) }, "",
			[]string{"REPORTED_TCB (bootloader 2, tee 0, snp 5, microcode 8) is not the VCEK's TCB (bootloader 2, tee 0, snp 5, microcode 9): that VCEK is not the one of the report's TCB"}},
		{"VMPL 4", func(r []byte) { r[offVMPL] = 4 }, "", []string{"VMPL 4 is not one of 0 to 3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evidence := append(signedReport(t, s, nil, func(r []byte) {
				for _, off := range []int{offCurrentTCB, offReportedTCB, offCommittedTCB, offLaunchTCB} {
					binary.LittleEndian.PutUint64(r[off:], uint64(vcekTCB))
				}
				tc.alter(r)
			}), table...)
			c, err := fakeVerifier(t, s).Verify(context.Background(), evidence, fakeTime.Add(time.Hour))
			if tc.status == "" {
				wantErr(t, err, "check SEV-SNP report against its VCEK certificate: "+tc.reasons[0])
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.TCBStatus != tc.status || len(c.SNP.StatusReasons) != len(tc.reasons) {
				t.Fatalf("status %s, reasons %q; want %s and %d reasons", c.TCBStatus, c.SNP.StatusReasons, tc.status, len(tc.reasons))
			}
			for i, r := range tc.reasons {
				if !strings.HasPrefix(c.SNP.StatusReasons[i], r) {
					t.Errorf("reason %q, want it to start %q", c.SNP.StatusReasons[i], r)
				}
			}
		})
	}
}

// TestDecodeTCB checks both layouts of TCB_VERSION on the same 64 bits.
func TestDecodeTCB(t *testing.T) {
	const raw = 0xd918000000000004 | 0x0000000302010000
	for line, want := range map[string]string{
		"Milan": "bootloader 4, tee 0, snp 24, microcode 217",
		"Genoa": "bootloader 4, tee 0, snp 24, microcode 217",
		"Turin": "fmc 4, bootloader 0, tee 1, snp 2, microcode 217",
	} {
		if got := decodeTCB(raw, line).String(); got != want {
			t.Errorf("%s: %s, want %s", line, got, want)
		}
	}
}

// TestProductOfReport: a version 3 report names its CPU, whose product line's roots must have
// signed the VCEK. A Milan VCEK does not vouch for a report of a Genoa CPU.
func TestProductOfReport(t *testing.T) {
	s := fakeSigner(t)
	table := certTable(t, s)
	for _, tc := range []struct {
		name          string
		family, model byte
		want          string
	}{
		{"Milan", 0x19, 0x01, ""},
		{"Genoa", 0x19, 0x11, "verify SEV-SNP report with go-sev-guest"},
	} {
		evidence := append(signedReport(t, s, nil, func(r []byte) {
			binary.LittleEndian.PutUint32(r, 3)
			r[0x188], r[0x189] = tc.family, tc.model
		}), table...)
		c, err := fakeVerifier(t, s).Verify(context.Background(), evidence, fakeTime.Add(time.Hour))
		if tc.want != "" {
			wantErr(t, err, tc.want)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.SNP.ProductLine != tc.name || c.SNP.ReportVersion != 3 {
			t.Errorf("%s: claims %+v", tc.name, c.SNP)
		}
	}
}
