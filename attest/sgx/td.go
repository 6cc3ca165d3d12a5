package sgx

import "encoding/binary"

// TDReport is the report body of a TDX quote: the trust domain as the TDX module measured it,
// and the module itself (TDX 1.0; TDX 1.5 adds TEETCBSVN2 and MRServiceTD).
type TDReport struct {
	// TEETCBSVN is the TCB of the TDX module and platform when the TD was launched: byte 0 the
	// module's ISVSVN, byte 1 its major version (0 for TDX 1.0 modules without an identity of
	// their own), the rest graded by the TCB info's tdxtcbcomponents.
	TEETCBSVN      [16]byte
	MRSEAM         [48]byte // the TDX module's measurement
	MRSignerSEAM   [48]byte // the TDX module's signer: zero for Intel's
	SEAMAttributes [8]byte
	TDAttributes   [8]byte // u64 little-endian; see the TDAttr constants
	XFAM           [8]byte // extended features the TD may use (XCR0 and IA32_XSS bits)
	MRTD           [48]byte
	MRConfigID     [48]byte
	MROwner        [48]byte
	MROwnerConfig  [48]byte
	RTMRs          [4][48]byte
	ReportData     [64]byte
	// TD 1.5 only (zero in TD 1.0 bodies).
	TEETCBSVN2  [16]byte // the TCB of the TDX module now, which may have been updated since launch
	MRServiceTD [48]byte // the service TDs bound to this TD; zero when none
}

// Bits of TD_ATTRIBUTES (Intel TDX module ABI).
const (
	TDAttrDebug         = 1 << 0  // the host can read and modify the TD: not confidential
	TDAttrICSSD         = 1 << 16 // instruction-count based single-step defence
	TDAttrLASS          = 1 << 27 // linear address space separation
	TDAttrSEPTVEDisable = 1 << 28 // no #VE on access to a pending page (a Linux TD requires it)
	TDAttrMigratable    = 1 << 29 // the TD may be migrated
	TDAttrPKS           = 1 << 30 // supervisor protection keys
	TDAttrKL            = 1 << 31 // key locker
	TDAttrPerfmon       = 1 << 63 // the TD may use the performance monitoring counters
)

// Attributes returns TD_ATTRIBUTES.
func (t *TDReport) Attributes() uint64 { return binary.LittleEndian.Uint64(t.TDAttributes[:]) }

// Debug reports whether the TD is a debug TD, whose memory and state the host can read.
func (t *TDReport) Debug() bool { return t.Attributes()&TDAttrDebug != 0 }

// parseTDReport decodes a TD report body of 584 (TD 1.0) or 648 (TD 1.5) bytes; nil if b is
// short, which the caller's reader has already recorded as an error.
func parseTDReport(b []byte) *TDReport {
	if len(b) != td10Size && len(b) != td15Size {
		return nil
	}
	t := new(TDReport)
	for _, f := range t.fields() {
		if f.off < len(b) {
			copy(f.dst, b[f.off:])
		}
	}
	return t
}

// tdField is where a field of a TD report lies in its encoding.
type tdField struct {
	off int
	dst []byte
}

// fields lists t's fields with their offsets; the TD 1.5 ones come last.
func (t *TDReport) fields() []tdField {
	f := []tdField{
		{0, t.TEETCBSVN[:]}, {16, t.MRSEAM[:]}, {64, t.MRSignerSEAM[:]}, {112, t.SEAMAttributes[:]},
		{120, t.TDAttributes[:]}, {128, t.XFAM[:]}, {136, t.MRTD[:]}, {184, t.MRConfigID[:]},
		{232, t.MROwner[:]}, {280, t.MROwnerConfig[:]},
	}
	for i := range t.RTMRs {
		f = append(f, tdField{328 + 48*i, t.RTMRs[i][:]})
	}
	return append(f, tdField{520, t.ReportData[:]}, tdField{584, t.TEETCBSVN2[:]}, tdField{600, t.MRServiceTD[:]})
}

// Marshal encodes t as a TD report body of size bytes: 584 (TD 1.0) or 648 (TD 1.5).
func (t *TDReport) Marshal(size int) []byte {
	b := make([]byte, size)
	for _, f := range t.fields() {
		if f.off < size {
			copy(b[f.off:], f.dst)
		}
	}
	return b
}
