package nvidia

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// Sizes of the SPDM 1.1 GET_MEASUREMENTS exchange as NVIDIA GPUs produce it.
const (
	RequestSize   = 37 // version, code, param1, param2, nonce[32], slot ID
	NonceSize     = 32
	SignatureSize = 96 // ECDSA P-384 r ‖ s
	spdmVersion11 = 0x11
	codeRequest   = 0xE0 // GET_MEASUREMENTS
	codeResponse  = 0x60 // MEASUREMENTS
	dmtfSpec      = 0x01 // MeasurementSpecification bit 0: DMTF
)

// Opaque-data field types NVIDIA GPUs report (nvtrust's OPAQUE_FIELD_ID_* numbering).
const (
	OpaqueDriverVersion uint16 = 3
	OpaqueGPUInfo       uint16 = 4
	OpaqueVBIOSVersion  uint16 = 6
	OpaqueNVDEC0Status  uint16 = 11
	OpaqueMeasCount     uint16 = 12
	OpaqueChipSKU       uint16 = 15
	OpaqueChipSKUMod    uint16 = 16
	OpaqueProject       uint16 = 17
	OpaqueProjectSKU    uint16 = 18
	OpaqueProjectSKUMod uint16 = 19
	OpaqueFWID          uint16 = 20
)

// Evidence is a parsed GET_MEASUREMENTS request and its signed response.
type Evidence struct {
	Raw      []byte // the whole evidence as given
	Request  Request
	Response Response
	// SignedLen is how many leading bytes of Raw the signature covers: the request and the
	// response up to the signature.
	SignedLen int
	// Trailing counts the bytes after the signature, which nothing signs (some GPUs append one).
	Trailing int
}

// Request is the SPDM GET_MEASUREMENTS request the verifier's nonce went out in.
type Request struct {
	Version byte
	Param1  byte // bit 0: signature requested
	Param2  byte // measurement operation: 0xFF for all blocks
	Nonce   [NonceSize]byte
	SlotID  byte
}

// Response is the GPU's MEASUREMENTS response.
type Response struct {
	Version   byte
	Param1    byte
	Param2    byte // slot ID of the certificate chain that signed
	Blocks    []Block
	Nonce     [NonceSize]byte // the responder's nonce
	Opaque    Opaque
	Signature []byte // SignatureSize bytes, r ‖ s
}

// Block is one DMTF measurement block.
type Block struct {
	Index     byte // 1-based
	ValueType byte // DMTFSpecMeasurementValueType
	Value     []byte
}

// Block returns the measurement block with the given (1-based) index, or nil.
func (r *Response) Block(index int) *Block {
	for i := range r.Blocks {
		if int(r.Blocks[i].Index) == index {
			return &r.Blocks[i]
		}
	}
	return nil
}

// Opaque is NVIDIA's opaque data: type-length-value fields.
type Opaque struct {
	Fields []OpaqueField // in the order given; types unique
}

// OpaqueField is one field of the opaque data.
type OpaqueField struct {
	Type  uint16
	Value []byte
}

// Get returns the value of the field of type t, or nil.
func (o *Opaque) Get(t uint16) []byte {
	for _, f := range o.Fields {
		if f.Type == t {
			return f.Value
		}
	}
	return nil
}

// String returns the field of type t as text, without its trailing NULs.
func (o *Opaque) String(t uint16) string {
	return strings.TrimRight(string(o.Get(t)), "\x00")
}

// DriverVersion is the driver version the GPU reports, e.g. "550.90.07".
func (o *Opaque) DriverVersion() string { return o.String(OpaqueDriverVersion) }

// VBIOSVersion is the VBIOS version in NVIDIA's notation, e.g. "96.00.9f.00.01": the first half
// of the field's bytes in reverse order, then the byte after them, in lower-case hex.
func (o *Opaque) VBIOSVersion() string {
	b := o.Get(OpaqueVBIOSVersion)
	if len(b) < 2 {
		return ""
	}
	h := len(b) / 2
	parts := make([]string, 0, h+1)
	for i := h - 1; i >= 0; i-- {
		parts = append(parts, hex.EncodeToString(b[i:i+1]))
	}
	parts = append(parts, hex.EncodeToString(b[h:h+1]))
	return strings.Join(parts, ".")
}

// FWID is the firmware identity the GPU reports, which its leaf certificate must carry.
func (o *Opaque) FWID() []byte { return o.Get(OpaqueFWID) }

// DecodeEvidence returns the evidence bytes from raw bytes or from hex text (what nvtrust and
// Trustee write; white space is ignored).
func DecodeEvidence(b []byte) ([]byte, error) {
	if len(b) > 0 && b[0] == spdmVersion11 {
		return b, nil
	}
	text := strings.Join(strings.Fields(string(b)), "")
	out, err := hex.DecodeString(text)
	if err != nil {
		return nil, stepErr(StepEvidence, "%w: neither SPDM 1.1 bytes nor hex text: %v", ErrFormat, err)
	}
	return out, nil
}

// ParseEvidence parses a GET_MEASUREMENTS request followed by its MEASUREMENTS response. It
// checks the format only, not the signature.
func ParseEvidence(b []byte) (*Evidence, error) {
	ev, err := parseEvidence(b)
	if err != nil {
		return nil, stepErr(StepEvidence, "%w: %v", ErrFormat, err)
	}
	return ev, nil
}

func parseEvidence(b []byte) (*Evidence, error) {
	if len(b) < RequestSize {
		return nil, fmt.Errorf("%d bytes, shorter than the %d-byte GET_MEASUREMENTS request", len(b), RequestSize)
	}
	ev := &Evidence{Raw: b}
	q := &ev.Request
	q.Version, q.Param1, q.Param2, q.SlotID = b[0], b[2], b[3], b[36]
	copy(q.Nonce[:], b[4:36])
	switch {
	case q.Version != spdmVersion11:
		return nil, fmt.Errorf("request SPDM version %#x, want 0x11", q.Version)
	case b[1] != codeRequest:
		return nil, fmt.Errorf("request code %#x is not GET_MEASUREMENTS (0xe0)", b[1])
	case q.Param1&1 == 0:
		return nil, fmt.Errorf("the request did not ask for a signature")
	}
	r := &ev.Response
	p := b[RequestSize:]
	if len(p) < 8 {
		return nil, fmt.Errorf("response shorter than its 8-byte header")
	}
	r.Version, r.Param1, r.Param2 = p[0], p[2], p[3]
	if r.Version != q.Version {
		return nil, fmt.Errorf("response SPDM version %#x differs from the request's", r.Version)
	}
	if p[1] != codeResponse {
		return nil, fmt.Errorf("response code %#x is not MEASUREMENTS (0x60)", p[1])
	}
	nblocks := int(p[4])
	recLen := int(p[5]) | int(p[6])<<8 | int(p[7])<<16
	off := 8
	if len(p)-off < recLen {
		return nil, fmt.Errorf("measurement record of %d bytes overruns the response", recLen)
	}
	blocks, err := parseBlocks(p[off:off+recLen], nblocks)
	if err != nil {
		return nil, err
	}
	r.Blocks = blocks
	off += recLen
	if len(p)-off < NonceSize+2 {
		return nil, fmt.Errorf("response ends before its nonce and opaque length")
	}
	copy(r.Nonce[:], p[off:off+NonceSize])
	off += NonceSize
	opaqueLen := int(binary.LittleEndian.Uint16(p[off:]))
	off += 2
	if len(p)-off < opaqueLen {
		return nil, fmt.Errorf("opaque data of %d bytes overruns the response", opaqueLen)
	}
	if r.Opaque, err = parseOpaque(p[off : off+opaqueLen]); err != nil {
		return nil, err
	}
	off += opaqueLen
	if len(p)-off < SignatureSize {
		return nil, fmt.Errorf("response ends before its %d-byte signature", SignatureSize)
	}
	r.Signature = p[off : off+SignatureSize]
	ev.SignedLen = RequestSize + off
	ev.Trailing = len(p) - off - SignatureSize
	return ev, nil
}

func parseBlocks(rec []byte, n int) ([]Block, error) {
	if n == 0 {
		return nil, fmt.Errorf("no measurement blocks")
	}
	blocks := make([]Block, 0, n)
	for i := 0; i < n; i++ {
		if len(rec) < 7 {
			return nil, fmt.Errorf("measurement block %d: record ends", i+1)
		}
		idx, spec, size := rec[0], rec[1], int(binary.LittleEndian.Uint16(rec[2:]))
		if spec != dmtfSpec {
			return nil, fmt.Errorf("measurement block %d: specification %#x is not DMTF", idx, spec)
		}
		if len(rec)-4 < size || size < 3 {
			return nil, fmt.Errorf("measurement block %d: size %d does not fit", idx, size)
		}
		m := rec[4 : 4+size]
		vlen := int(binary.LittleEndian.Uint16(m[1:]))
		if vlen != size-3 {
			return nil, fmt.Errorf("measurement block %d: value size %d in a %d-byte measurement", idx, vlen, size)
		}
		for _, b := range blocks {
			if b.Index == idx {
				return nil, fmt.Errorf("measurement block index %d appears twice", idx)
			}
		}
		blocks = append(blocks, Block{Index: idx, ValueType: m[0], Value: m[3:]})
		rec = rec[4+size:]
	}
	if len(rec) != 0 {
		return nil, fmt.Errorf("%d bytes after the last measurement block", len(rec))
	}
	return blocks, nil
}

func parseOpaque(b []byte) (Opaque, error) {
	var o Opaque
	for len(b) > 0 {
		if len(b) < 4 {
			return o, fmt.Errorf("opaque data: %d bytes left, short of a field header", len(b))
		}
		t, n := binary.LittleEndian.Uint16(b), int(binary.LittleEndian.Uint16(b[2:]))
		if len(b)-4 < n {
			return o, fmt.Errorf("opaque field %d of %d bytes overruns the opaque data", t, n)
		}
		if o.Get(t) != nil {
			return o, fmt.Errorf("opaque field %d appears twice", t)
		}
		o.Fields = append(o.Fields, OpaqueField{Type: t, Value: bytes.Clone(b[4 : 4+n])})
		b = b[4+n:]
	}
	if o.DriverVersion() == "" || o.VBIOSVersion() == "" {
		return o, fmt.Errorf("opaque data lacks the driver or VBIOS version")
	}
	return o, nil
}
