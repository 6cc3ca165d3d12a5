package sgx

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// SigStructSize is the size of an Intel SIGSTRUCT, the content of a Gramine .sig file.
const SigStructSize = 1808

// The fixed HEADER and HEADER2 fields of a SIGSTRUCT.
var (
	sigStructHeader  = []byte{0x06, 0, 0, 0, 0xe1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0}
	sigStructHeader2 = []byte{0x01, 0x01, 0, 0, 0x60, 0, 0, 0, 0x60, 0, 0, 0, 0x01, 0, 0, 0}
)

// SigStruct is an enclave signature structure (Intel SDM "SIGSTRUCT"), as gramine-sgx-sign writes
// it to the .sig file: the measurements that the enclave must have to be launched.
type SigStruct struct {
	Vendor        uint32 // 0x8086 for Intel enclaves, else 0
	Date          string // YYYY-MM-DD as written (binary-coded decimal, not checked)
	SWDefined     uint32
	Modulus       [384]byte // RSA-3072 modulus, little-endian
	Exponent      uint32    // always 3
	Signature     [384]byte // little-endian
	MiscSelect    uint32
	MiscMask      uint32
	ISVFamilyID   [16]byte
	Attributes    [16]byte // FLAGS ‖ XFRM, as in a report
	AttributeMask [16]byte
	MREnclave     [32]byte // ENCLAVEHASH
	ISVExtProdID  [16]byte
	ISVProdID     uint16
	ISVSVN        uint16
	MRSigner      [32]byte // SHA-256 of Modulus as stored (little-endian)
}

// ParseSigStruct parses a SIGSTRUCT. It checks the size, both header constants and the exponent;
// it does not check the RSA signature. Errors wrap ErrFormat.
func ParseSigStruct(b []byte) (*SigStruct, error) {
	switch {
	case len(b) != SigStructSize:
		return nil, fmt.Errorf("%w: SIGSTRUCT is %d bytes, want %d", ErrFormat, len(b), SigStructSize)
	case !bytes.Equal(b[0:16], sigStructHeader) || !bytes.Equal(b[24:40], sigStructHeader2):
		return nil, fmt.Errorf("%w: not a SIGSTRUCT (bad header)", ErrFormat)
	}
	le := binary.LittleEndian
	s := &SigStruct{
		Vendor:     le.Uint32(b[16:20]),
		Date:       fmt.Sprintf("%04x-%02x-%02x", le.Uint16(b[22:24]), b[21], b[20]),
		SWDefined:  le.Uint32(b[40:44]),
		Exponent:   le.Uint32(b[512:516]),
		MiscSelect: le.Uint32(b[900:904]),
		MiscMask:   le.Uint32(b[904:908]),
		ISVProdID:  le.Uint16(b[1024:1026]),
		ISVSVN:     le.Uint16(b[1026:1028]),
	}
	if s.Exponent != 3 {
		return nil, fmt.Errorf("%w: SIGSTRUCT RSA exponent %d, want 3", ErrFormat, s.Exponent)
	}
	copy(s.Modulus[:], b[128:512])
	copy(s.Signature[:], b[516:900])
	copy(s.ISVFamilyID[:], b[912:928])
	copy(s.Attributes[:], b[928:944])
	copy(s.AttributeMask[:], b[944:960])
	copy(s.MREnclave[:], b[960:992])
	copy(s.ISVExtProdID[:], b[1008:1024])
	s.MRSigner = sha256.Sum256(s.Modulus[:])
	return s, nil
}

// Debug reports whether the enclave is signed as a debug enclave (DEBUG set in Attributes).
func (s *SigStruct) Debug() bool {
	return binary.LittleEndian.Uint64(s.Attributes[:8])&AttrDebug != 0
}

// DebugAllowed reports whether the signature lets the enclave run in debug mode: DEBUG is set in
// Attributes, or the mask leaves it free.
func (s *SigStruct) DebugAllowed() bool {
	return s.Debug() || binary.LittleEndian.Uint64(s.AttributeMask[:8])&AttrDebug == 0
}
