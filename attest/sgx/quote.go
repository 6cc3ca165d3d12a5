package sgx

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
)

// Sizes and codes of the DCAP quote format.
const (
	headerSize     = 48
	reportBodySize = 384 // SGX report body
	td10Size       = 584 // TD report body of TDX 1.0
	td15Size       = 648 // TD report body of TDX 1.5: TDX 1.0's, TEE_TCB_SVN2 and MRSERVICETD
	descriptorSize = 6   // version 5: body type u16, body size u32
	signatureSize  = 64  // ECDSA P-256 r ‖ s, 32 bytes each, big-endian
	publicKeySize  = 64  // P-256 point x ‖ y, 32 bytes each, big-endian

	attestationKeyECDSAP256 = 2
	certDataPCKChain        = 5 // PEM PCK leaf ‖ PCK CA ‖ root
	certDataQEReport        = 6 // versions 4 and 5: QE report certification data
)

// TEE types of the quote header.
const (
	TEETypeSGX = 0x00
	TEETypeTDX = 0x81
)

// Body types: what the report body of a quote is. Version 5 names it in a body descriptor;
// versions 3 and 4 imply it by the TEE type.
const (
	BodySGX  = 1 // SGX enclave report, 384 bytes
	BodyTD10 = 2 // TD report of TDX 1.0, 584 bytes
	BodyTD15 = 3 // TD report of TDX 1.5, 648 bytes
)

// intelQEVendorID is the QE vendor ID of Intel's Quoting Enclaves, the only one Intel's QVL
// verifies.
var intelQEVendorID = [16]byte{0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07}

// Attribute flags of an SGX report (ATTRIBUTES.FLAGS).
const (
	AttrInit      = 0x01 // the enclave has been initialised by EINIT
	AttrDebug     = 0x02 // the enclave can be inspected and modified by a debugger
	AttrMode64Bit = 0x04 // 64-bit enclave
	AttrProvKey   = 0x10 // the enclave may get the provisioning key
	AttrEInitKey  = 0x20 // the enclave may get the EINIT token key
)

// Header is the 48-byte quote header.
type Header struct {
	Version            uint16   // 3, 4 or 5
	AttestationKeyType uint16   // 2: ECDSA-256 with P-256
	TEEType            uint32   // TEETypeSGX or TEETypeTDX (reserved and zero in version 3)
	QESVN              uint16   // security version of the Quoting Enclave
	PCESVN             uint16   // security version of the Provisioning Certification Enclave
	QEVendorID         [16]byte // 939a7233f79c4ca9940a0db3957f0607 for Intel's QE
	UserData           [20]byte // the first 16 bytes are the platform's QE identifier
}

// ReportBody is a 384-byte SGX report body: the enclave's identity as the CPU measured it.
type ReportBody struct {
	CPUSVN       [16]byte
	MiscSelect   uint32
	ISVExtProdID [16]byte
	Attributes   [16]byte // FLAGS (u64 little-endian) ‖ XFRM (u64 little-endian)
	MREnclave    [32]byte
	MRSigner     [32]byte
	ConfigID     [64]byte
	ISVProdID    uint16
	ISVSVN       uint16
	ConfigSVN    uint16
	ISVFamilyID  [16]byte
	ReportData   [64]byte
}

// Flags returns ATTRIBUTES.FLAGS (see the Attr constants).
func (r *ReportBody) Flags() uint64 { return binary.LittleEndian.Uint64(r.Attributes[:8]) }

// Debug reports whether the enclave is a debug enclave, whose memory the host can read.
func (r *ReportBody) Debug() bool { return r.Flags()&AttrDebug != 0 }

// Quote is a parsed DCAP ECDSA P-256 quote of version 3, 4 or 5 whose certification data is the
// PEM PCK certificate chain: an SGX enclave's (Body) or a TDX trust domain's (TD).
type Quote struct {
	Header Header
	// BodyType is BodySGX, BodyTD10 or BodyTD15.
	BodyType          uint16
	Body              ReportBody          // the attested enclave (BodySGX)
	TD                *TDReport           // the attested trust domain (BodyTD10, BodyTD15); nil for SGX
	Signature         [signatureSize]byte // by AttestationKey over header ‖ (descriptor ‖) body
	AttestationKey    [publicKeySize]byte // the QE's P-256 attestation key
	QEReport          ReportBody          // the Quoting Enclave's report, binding AttestationKey
	QEReportSignature [signatureSize]byte // by the PCK leaf key over QEReport
	QEAuthData        []byte
	PCKChain          []byte // PEM: PCK leaf, PCK CA, root CA
	// Trailing counts the bytes after the signature data. Intel's QVL reads the signature data
	// by its declared length and never looks past it, and no signature covers what follows
	// (quote buffer padding that some quote generation services leave), so they are ignored.
	Trailing int

	signed   []byte // header ‖ (descriptor ‖) body as received
	qeReport []byte // QE report as received
}

// IsTD reports whether the quote attests a TDX trust domain.
func (q *Quote) IsTD() bool { return q.TD != nil }

// ReportData returns the 64 bytes of report data of the attested enclave or trust domain.
func (q *Quote) ReportData() [64]byte {
	if q.TD != nil {
		return q.TD.ReportData
	}
	return q.Body.ReportData
}

// ParseQuote parses a quote as Intel's QVL does: versions 3 (SGX), 4 (SGX or TD 1.0) and 5
// (SGX, TD 1.0 or TD 1.5, named by the body descriptor), Intel's QE vendor ID, ECDSA P-256.
// Every length within the signature data must be consistent; bytes after it are counted in
// Trailing and otherwise ignored. Errors wrap ErrFormat or ErrUnsupported. The quote keeps a copy
// of b.
func ParseQuote(b []byte) (*Quote, error) {
	b = bytes.Clone(b)
	r := &reader{b: b}
	q := new(Quote)
	h := &q.Header
	h.Version = r.u16()
	h.AttestationKeyType = r.u16()
	h.TEEType = r.u32()
	h.QESVN = r.u16()
	h.PCESVN = r.u16()
	copy(h.QEVendorID[:], r.bytes(16))
	copy(h.UserData[:], r.bytes(20))
	if r.err != nil {
		return nil, fmt.Errorf("quote header: %w", r.err)
	}
	if err := h.check(); err != nil {
		return nil, err
	}
	if err := q.parseBody(r); err != nil {
		return nil, err
	}
	q.signed = b[:r.off]
	sigLen := r.u32()
	if r.err != nil {
		return nil, fmt.Errorf("quote body: %w", r.err)
	}
	rest := len(b) - r.off
	if int64(sigLen) > int64(rest) {
		return nil, fmt.Errorf("%w: signature data length %d, but only %d bytes follow it", ErrFormat, sigLen, rest)
	}
	q.Trailing = rest - int(sigLen)
	r = &reader{b: r.bytes(int(sigLen))}
	copy(q.Signature[:], r.bytes(signatureSize))
	copy(q.AttestationKey[:], r.bytes(publicKeySize))
	if h.Version >= 4 {
		typ, data := r.certData()
		r.done("signature data")
		if r.err != nil {
			return nil, fmt.Errorf("quote signature data: %w", r.err)
		}
		if typ != certDataQEReport {
			return nil, fmt.Errorf("certification data type %d: %w (want 6, QE report)", typ, ErrUnsupported)
		}
		r = &reader{b: data}
	}
	if err := q.parseQEReportCertData(r); err != nil {
		return nil, err
	}
	return q, nil
}

// check checks the header's version, TEE type, key type and QE vendor as Intel's QVL does.
func (h *Header) check() error {
	switch {
	case h.Version < 3 || h.Version > 5:
		return fmt.Errorf("quote version %d: %w (want 3, 4 or 5)", h.Version, ErrUnsupported)
	case h.TEEType != TEETypeSGX && h.TEEType != TEETypeTDX:
		return fmt.Errorf("TEE type %#x: %w (want 0, SGX, or 0x81, TDX)", h.TEEType, ErrUnsupported)
	case h.Version == 3 && h.TEEType != TEETypeSGX:
		return fmt.Errorf("TEE type %#x in a version 3 quote: %w (version 3 is SGX only)", h.TEEType, ErrUnsupported)
	case h.AttestationKeyType != attestationKeyECDSAP256:
		return fmt.Errorf("attestation key type %d: %w (want 2, ECDSA P-256)", h.AttestationKeyType, ErrUnsupported)
	case h.QEVendorID != intelQEVendorID:
		return fmt.Errorf("QE vendor ID %x: %w (want Intel's, %x)", h.QEVendorID, ErrUnsupported, intelQEVendorID)
	}
	return nil
}

// parseBody reads the report body, after the body descriptor in version 5.
func (q *Quote) parseBody(r *reader) error {
	q.BodyType = BodySGX
	if q.Header.TEEType == TEETypeTDX {
		q.BodyType = BodyTD10
	}
	if q.Header.Version == 5 {
		typ, size := r.u16(), r.u32()
		if r.err != nil {
			return fmt.Errorf("quote body descriptor: %w", r.err)
		}
		want := map[uint16]uint32{BodySGX: reportBodySize, BodyTD10: td10Size, BodyTD15: td15Size}
		switch {
		case want[typ] == 0:
			return fmt.Errorf("body type %d: %w (want 1, SGX, 2, TD 1.0, or 3, TD 1.5)", typ, ErrUnsupported)
		case (typ == BodySGX) != (q.Header.TEEType == TEETypeSGX):
			return fmt.Errorf("%w: body type %d in a quote of TEE type %#x", ErrFormat, typ, q.Header.TEEType)
		case size != want[typ]:
			return fmt.Errorf("%w: body type %d of %d bytes, want %d", ErrFormat, typ, size, want[typ])
		}
		q.BodyType = typ
	}
	switch q.BodyType {
	case BodySGX:
		q.Body = parseReportBody(r.bytes(reportBodySize))
	case BodyTD10:
		q.TD = parseTDReport(r.bytes(td10Size))
	default:
		q.TD = parseTDReport(r.bytes(td15Size))
	}
	if r.err != nil {
		return fmt.Errorf("quote body: %w", r.err)
	}
	return nil
}

// parseQEReportCertData reads the QE report, its signature, the QE authentication data and the
// PCK chain certification data, which must fill r exactly.
func (q *Quote) parseQEReportCertData(r *reader) error {
	q.qeReport = r.bytes(reportBodySize)
	q.QEReport = parseReportBody(q.qeReport)
	copy(q.QEReportSignature[:], r.bytes(signatureSize))
	q.QEAuthData = r.bytes(int(r.u16()))
	typ, data := r.certData()
	r.done("certification data")
	if r.err != nil {
		return fmt.Errorf("quote signature data: %w", r.err)
	}
	if typ != certDataPCKChain {
		return fmt.Errorf("certification data type %d: %w (want 5, PEM PCK chain)", typ, ErrUnsupported)
	}
	q.PCKChain = data
	return nil
}

// PCKCertificates parses the PCK chain of the certification data: PCK leaf, PCK CA and root, in
// that order. Trailing NUL bytes and white space after the last certificate are ignored.
func (q *Quote) PCKCertificates() ([]*x509.Certificate, error) {
	certs, err := parseCerts(q.PCKChain)
	if err != nil {
		return nil, fmt.Errorf("PCK chain: %w", err)
	}
	if len(certs) != 3 {
		return nil, fmt.Errorf("%w: PCK chain holds %d certificates, want 3 (PCK, PCK CA, root)", ErrFormat, len(certs))
	}
	return certs, nil
}

// parseCerts parses a sequence of PEM certificates, which may be followed by white space and NUL
// bytes only.
func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		block, rest := pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: PEM block %q, want CERTIFICATE", ErrFormat, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d: %v", ErrFormat, len(certs), err)
		}
		certs = append(certs, c)
		b = rest
	}
	if len(bytes.Trim(b, " \t\r\n\x00")) != 0 {
		return nil, fmt.Errorf("%w: %d bytes that are not PEM certificates", ErrFormat, len(b))
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no PEM certificate", ErrFormat)
	}
	return certs, nil
}

// parseReportBody decodes a 384-byte report body (or a zero body if b is short, which the caller's
// reader has already recorded as an error).
func parseReportBody(b []byte) ReportBody {
	var r ReportBody
	if len(b) != reportBodySize {
		return r
	}
	le := binary.LittleEndian
	copy(r.CPUSVN[:], b[0:16])
	r.MiscSelect = le.Uint32(b[16:20])
	copy(r.ISVExtProdID[:], b[32:48])
	copy(r.Attributes[:], b[48:64])
	copy(r.MREnclave[:], b[64:96])
	copy(r.MRSigner[:], b[128:160])
	copy(r.ConfigID[:], b[192:256])
	r.ISVProdID = le.Uint16(b[256:258])
	r.ISVSVN = le.Uint16(b[258:260])
	r.ConfigSVN = le.Uint16(b[260:262])
	copy(r.ISVFamilyID[:], b[304:320])
	copy(r.ReportData[:], b[320:384])
	return r
}

// reader reads little-endian fields; the first short read sets err and later reads return zeros.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b)-r.off {
		r.err = fmt.Errorf("%w: truncated: need %d bytes at offset %d, have %d", ErrFormat, n, r.off, len(r.b)-r.off)
		return nil
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v
}

func (r *reader) u16() uint16 {
	if v := r.bytes(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.bytes(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

// certData reads a certification data entry: type u16, size u32, data.
func (r *reader) certData() (typ uint16, data []byte) {
	typ = r.u16()
	size := r.u32()
	if r.err == nil && int64(size) > int64(len(r.b)-r.off) {
		r.err = fmt.Errorf("%w: certification data size %d, but only %d bytes left", ErrFormat, size, len(r.b)-r.off)
	}
	return typ, r.bytes(int(size))
}

// done records an error if bytes are left after what.
func (r *reader) done(what string) {
	if r.err == nil && r.off != len(r.b) {
		r.err = fmt.Errorf("%w: %d unexpected bytes after %s", ErrFormat, len(r.b)-r.off, what)
	}
}
