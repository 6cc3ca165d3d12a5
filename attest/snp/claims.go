package snp

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"

	"github.com/ppml/ppml/attest"
)

// TCB statuses of SEV-SNP evidence, in Intel's words (see [Verifier.Verify] for when).
const (
	UpToDate            = "UpToDate"
	ConfigurationNeeded = "ConfigurationNeeded"
)

// decodeTCB decodes a TCB_VERSION. Milan and Genoa lay it out as bootloader (byte 0), TEE (1),
// four reserved bytes, SNP (6) and microcode (7); Turin as FMC (0), bootloader (1), TEE (2),
// SNP (3), three reserved bytes and microcode (7).
func decodeTCB(raw uint64, productLine string) attest.SNPTCB {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], raw)
	t := attest.SNPTCB{Raw: binary.BigEndian.AppendUint64(nil, raw), Microcode: b[7]}
	if productLine == "Turin" {
		fmc := b[0]
		t.FMC, t.Bootloader, t.TEE, t.SNP = &fmc, b[1], b[2], b[3]
	} else {
		t.Bootloader, t.TEE, t.SNP = b[0], b[1], b[6]
	}
	return t
}

// productLine returns the CPU product line of a report: from its CPUID fields (report version 3
// and later), else from the endorsement certificate's product name.
func productLine(r *spb.Report, ext *kds.Extensions) string {
	if fms := r.GetCpuid1EaxFms(); fms != 0 {
		return kds.ProductLineFromFms(fms)
	}
	return kds.ProductLineOfProductName(ext.ProductName)
}

// tcbStatus judges a report whose REPORTED_TCB is its endorsement key's and at most its
// CURRENT_TCB, and whose committed TCB and firmware are at most the current ones. It is
// UpToDate when the reported, committed and current TCBs and the committed and current firmware
// are the same, else ConfigurationNeeded, with the reasons, each saying what the host's
// operator can do.
func tcbStatus(r *spb.Report, c *attest.SNPClaims) (string, []string) {
	var reasons []string
	if r.GetReportedTcb() != r.GetCurrentTcb() {
		reasons = append(reasons, fmt.Sprintf("REPORTED_TCB (%v) is below CURRENT_TCB (%v): the report's key vouches only for the older TCB; "+
			"the host should report its current TCB and serve the VCEK of that TCB", c.ReportedTCB, c.CurrentTCB))
	}
	if r.GetCommittedTcb() != r.GetCurrentTcb() || c.CommittedFirmware != c.CurrentFirmware {
		reasons = append(reasons, fmt.Sprintf("the firmware is provisional (committed %s with TCB %v, current %s with TCB %v) and can be rolled back; "+
			"the host should commit it (SNP_COMMIT)", c.CommittedFirmware, c.CommittedTCB, c.CurrentFirmware, c.CurrentTCB))
	}
	if len(reasons) > 0 {
		return ConfigurationNeeded, reasons
	}
	return UpToDate, nil
}

// snpClaims returns the claims of a verified report signed by key, whose endorsement
// certificate has the extensions ext.
func snpClaims(r *spb.Report, key abi.ReportSigner, ext *kds.Extensions) (*attest.SNPClaims, error) {
	p, err := abi.ParseSnpPolicy(r.GetPolicy())
	if err != nil {
		return nil, fmt.Errorf("SEV-SNP guest policy: %w", err)
	}
	line := productLine(r, ext)
	be64 := func(v uint64) attest.Hex { return binary.BigEndian.AppendUint64(nil, v) }
	c := &attest.SNPClaims{
		ReportVersion: r.GetVersion(),
		ProductLine:   line,
		SigningKey:    map[abi.ReportSigner]string{abi.VcekReportSigner: "vcek", abi.VlekReportSigner: "vlek"}[key],
		ChipIDPresent: !bytes.Equal(r.GetChipId(), make([]byte, abi.ChipIDSize)),
		VMPL:          r.GetVmpl(),
		GuestSVN:      r.GetGuestSvn(),
		Policy: attest.SNPPolicy{
			Raw: be64(r.GetPolicy()), ABIMajor: p.ABIMajor, ABIMinor: p.ABIMinor, SMT: p.SMT, MigrateMA: p.MigrateMA,
			Debug: p.Debug, SingleSocket: p.SingleSocket, CXLAllowed: p.CXLAllowed, MemAES256XTS: p.MemAES256XTS,
			RAPLDisabled: p.RAPLDis, CiphertextHiding: p.CipherTextHidingDRAM, PageSwapDisabled: p.PageSwapDisable,
		},
		FamilyID:        r.GetFamilyId(),
		ImageID:         r.GetImageId(),
		HostData:        r.GetHostData(),
		IDKeyDigest:     r.GetIdKeyDigest(),
		AuthorKeyDigest: r.GetAuthorKeyDigest(),
		ReportedTCB:     decodeTCB(r.GetReportedTcb(), line),
		CurrentTCB:      decodeTCB(r.GetCurrentTcb(), line),
		CommittedTCB:    decodeTCB(r.GetCommittedTcb(), line),
		LaunchTCB:       decodeTCB(r.GetLaunchTcb(), line),
		CurrentFirmware: attest.SNPFirmware{Major: uint8(r.GetCurrentMajor()), Minor: uint8(r.GetCurrentMinor()), Build: uint8(r.GetCurrentBuild())},
		CommittedFirmware: attest.SNPFirmware{Major: uint8(r.GetCommittedMajor()), Minor: uint8(r.GetCommittedMinor()),
			Build: uint8(r.GetCommittedBuild())},
		PlatformInfo: be64(r.GetPlatformInfo()),
	}
	return c, nil
}
