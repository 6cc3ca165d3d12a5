package collateral

import (
	"cmp"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// DCAP quote layout, as far as finding the PCK certificate takes: the header, the body (whose
// size the version, TEE type and, from version 5, the body type give), the signature data's
// length, the quote signature and attestation key, then the certification data: the PEM PCK
// chain (type 5) in version 3, inside the QE report certification data (type 6) from version 4.
const (
	quoteHeaderSize   = 48
	sgxBodySize       = 384 // an SGX report body, also the QE report's size
	td10BodySize      = 584 // a TD 1.0 report body
	td15BodySize      = 648 // a TD 1.5 report body
	teeTypeTDX        = 0x81
	certDataPCKChain  = 5
	certDataQEReport  = 6
	signatureAndKey   = 128 // ECDSA P-256 signature and public key
	qeReportSignature = 64
)

// OIDs of the SGX extension of PCK certificates and of its FMSPC.
var (
	oidSGXExtension = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}
	oidFMSPC        = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 4}
)

// quoteReader reads a quote's fields in order; the first short read sets err.
type quoteReader struct {
	b   []byte
	err error
}

func (r *quoteReader) bytes(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		r.err = cmp.Or(r.err, errors.New("the quote is shorter than its fields say"))
		return nil
	}
	b := r.b[:n]
	r.b = r.b[n:]
	return b
}

func (r *quoteReader) u16() int {
	if b := r.bytes(2); b != nil {
		return int(binary.LittleEndian.Uint16(b))
	}
	return 0
}

func (r *quoteReader) u32() int {
	if b := r.bytes(4); b != nil {
		return int(binary.LittleEndian.Uint32(b))
	}
	return 0
}

// certData reads certification data of type want and returns it.
func (r *quoteReader) certData(want int) []byte {
	typ, size := r.u16(), r.u32()
	data := r.bytes(size)
	if r.err == nil && typ != want {
		r.err = fmt.Errorf("certification data type %d, want %d", typ, want)
	}
	return data
}

// PlatformOfQuote returns the platform of an SGX or TDX DCAP quote (versions 3 to 5): its TEE, and
// the FMSPC and PCK CA of the PCK certificate in its certification data. It checks no signature:
// it only finds what collateral the quote needs.
func PlatformOfQuote(quote []byte) (Platform, error) {
	r := &quoteReader{b: quote}
	header := r.bytes(quoteHeaderSize)
	if r.err != nil {
		return Platform{}, errors.New("not a DCAP quote: shorter than a quote header")
	}
	version, tee := binary.LittleEndian.Uint16(header), binary.LittleEndian.Uint32(header[4:])
	kind, bodySize := SGX, sgxBodySize
	switch {
	case version < 3 || version > 5:
		return Platform{}, fmt.Errorf("not a DCAP quote of version 3 to 5 (version %d)", version)
	case tee == teeTypeTDX && version >= 4:
		kind, bodySize = TDX, td10BodySize
	case tee != 0:
		return Platform{}, fmt.Errorf("quote version %d of TEE type %#x is neither SGX nor TDX", version, tee)
	}
	if version == 5 {
		bodyType, size := r.u16(), r.u32()
		if want := [4]int{0, sgxBodySize, td10BodySize, td15BodySize}; bodyType < 1 || bodyType > 3 || size != want[bodyType] {
			return Platform{}, fmt.Errorf("quote body type %d of %d bytes is not one of SGX, TD 1.0 or TD 1.5", bodyType, size)
		}
		bodySize = size
	}
	r.bytes(bodySize)
	sig := &quoteReader{b: r.bytes(r.u32())}
	sig.bytes(signatureAndKey)
	if version >= 4 {
		sig = &quoteReader{b: sig.certData(certDataQEReport), err: sig.err}
	}
	sig.bytes(sgxBodySize + qeReportSignature)
	sig.bytes(sig.u16()) // QE authentication data
	chain := sig.certData(certDataPCKChain)
	if err := cmp.Or(r.err, sig.err); err != nil {
		return Platform{}, fmt.Errorf("quote signature data: %w", err)
	}
	block, _ := pem.Decode(chain)
	if block == nil || block.Type != "CERTIFICATE" {
		return Platform{}, errors.New("the quote's PCK chain holds no PEM certificate")
	}
	pck, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return Platform{}, fmt.Errorf("the quote's PCK certificate: %w", err)
	}
	return PlatformOfPCK(kind, pck)
}

// PlatformOfPCK returns the platform of a PCK certificate of a TEE: the FMSPC of its SGX
// extension, and the CA that issued it (its issuer's CN names the Processor or Platform CA).
func PlatformOfPCK(tee TEE, pck *x509.Certificate) (Platform, error) {
	p := Platform{TEE: tee}
	switch cn := pck.Issuer.CommonName; {
	case strings.Contains(cn, "Processor"):
		p.CA = ProcessorCA
	case strings.Contains(cn, "Platform"):
		p.CA = PlatformCA
	default:
		return p, fmt.Errorf("the PCK certificate's issuer %q is neither the Processor nor the Platform CA", cn)
	}
	for _, ext := range pck.Extensions {
		if !ext.Id.Equal(oidSGXExtension) {
			continue
		}
		var entries []struct {
			ID    asn1.ObjectIdentifier
			Value asn1.RawValue
		}
		if _, err := asn1.Unmarshal(ext.Value, &entries); err != nil {
			return p, fmt.Errorf("the PCK certificate's SGX extension: %w", err)
		}
		for _, e := range entries {
			if e.ID.Equal(oidFMSPC) && e.Value.Tag == asn1.TagOctetString && len(e.Value.Bytes) == 6 {
				p.FMSPC = strings.ToUpper(hex.EncodeToString(e.Value.Bytes))
				return p, nil
			}
		}
	}
	return p, errors.New("the PCK certificate has no FMSPC in an SGX extension")
}
