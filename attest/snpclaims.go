package attest

import "fmt"

// SNPClaims are the fields of an SEV-SNP attestation report that a policy may judge, beside the
// measurement, debug, TCB status and report data that every kind of evidence has.
type SNPClaims struct {
	ReportVersion uint32 `json:"report_version"`
	// ProductLine is the CPU's: "Milan", "Genoa" or "Turin".
	ProductLine string `json:"product_line"`
	// SigningKey is the key that signed the report: "vcek" (one chip's, at one TCB) or "vlek"
	// (a cloud provider's, shared by its machines).
	SigningKey string `json:"signing_key"`
	// ChipIDPresent is false when the report's CHIP_ID is zero: VLEK-signed, or MASK_CHIP_ID set.
	ChipIDPresent bool      `json:"chip_id_present"`
	VMPL          uint32    `json:"vmpl"`
	GuestSVN      uint32    `json:"guest_svn"`
	Policy        SNPPolicy `json:"policy"`
	FamilyID      Hex       `json:"family_id"`
	ImageID       Hex       `json:"image_id"`
	// HostData is the 32 bytes the host gave at launch (e.g. an init-data digest).
	HostData        Hex `json:"host_data"`
	IDKeyDigest     Hex `json:"id_key_digest"`
	AuthorKeyDigest Hex `json:"author_key_digest"`
	// ReportedTCB is the TCB of the key that signed the report: what AMD vouches for.
	// CurrentTCB is the firmware's own, CommittedTCB the one it cannot be rolled back below,
	// LaunchTCB the one the guest was launched (or imported) under.
	ReportedTCB       SNPTCB      `json:"reported_tcb"`
	CurrentTCB        SNPTCB      `json:"current_tcb"`
	CommittedTCB      SNPTCB      `json:"committed_tcb"`
	LaunchTCB         SNPTCB      `json:"launch_tcb"`
	CurrentFirmware   SNPFirmware `json:"current_firmware"`
	CommittedFirmware SNPFirmware `json:"committed_firmware"`
	PlatformInfo      Hex         `json:"platform_info"` // PLATFORM_INFO, big-endian
	// StatusReasons says why the TCB status is not UpToDate, and what the host's operator can do.
	StatusReasons []string `json:"status_reasons,omitempty"`
	// Revocation is "good" when AMD's CRL of the product line, current at the verification
	// time, revokes neither the ASK nor the ASVK that signed the report's key, "unchecked" when
	// the verifier had no CRL and was told to accept that (skip_crl).
	Revocation string `json:"revocation"`
}

// SNPPolicy is an SEV-SNP guest policy, decoded.
type SNPPolicy struct {
	Raw              Hex   `json:"raw"` // the 64-bit policy, big-endian
	ABIMajor         uint8 `json:"abi_major"`
	ABIMinor         uint8 `json:"abi_minor"`
	SMT              bool  `json:"smt"`
	MigrateMA        bool  `json:"migrate_ma"`
	Debug            bool  `json:"debug"`
	SingleSocket     bool  `json:"single_socket"`
	CXLAllowed       bool  `json:"cxl_allowed"`
	MemAES256XTS     bool  `json:"mem_aes_256_xts"`
	RAPLDisabled     bool  `json:"rapl_disabled"`
	CiphertextHiding bool  `json:"ciphertext_hiding"`
	PageSwapDisabled bool  `json:"page_swap_disabled"`
}

// SNPTCB is an SEV-SNP TCB_VERSION decoded: the security patch level (SPL) of each component.
// FMC is set on Turin and later only, whose TCB_VERSION has it.
type SNPTCB struct {
	Raw        Hex    `json:"raw"` // the 64-bit TCB_VERSION, big-endian
	FMC        *uint8 `json:"fmc,omitempty"`
	Bootloader uint8  `json:"bootloader"`
	TEE        uint8  `json:"tee"`
	SNP        uint8  `json:"snp"`
	Microcode  uint8  `json:"microcode"`
}

// String writes t as "bootloader 3, tee 0, snp 8, microcode 115" (fmc first where there is one).
func (t SNPTCB) String() string {
	s := fmt.Sprintf("bootloader %d, tee %d, snp %d, microcode %d", t.Bootloader, t.TEE, t.SNP, t.Microcode)
	if t.FMC != nil {
		s = fmt.Sprintf("fmc %d, %s", *t.FMC, s)
	}
	return s
}

// SNPFirmware is the version of the AMD Secure Processor's SEV firmware.
type SNPFirmware struct {
	Major uint8 `json:"major"`
	Minor uint8 `json:"minor"`
	Build uint8 `json:"build"`
}

// String writes f as "1.55.29".
func (f SNPFirmware) String() string { return fmt.Sprintf("%d.%d.%d", f.Major, f.Minor, f.Build) }

// Less reports whether f is an older version than g.
func (f SNPFirmware) Less(g SNPFirmware) bool {
	if f.Major != g.Major {
		return f.Major < g.Major
	}
	if f.Minor != g.Minor {
		return f.Minor < g.Minor
	}
	return f.Build < g.Build
}
