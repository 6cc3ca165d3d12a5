package sgx

import (
	"encoding/asn1"
	"encoding/binary"
	"slices"
)

// Marshal encodes h as the 48-byte quote header.
func (h *Header) Marshal() []byte {
	le := binary.LittleEndian
	b := make([]byte, 0, headerSize)
	b = le.AppendUint16(b, h.Version)
	b = le.AppendUint16(b, h.AttestationKeyType)
	b = le.AppendUint32(b, h.TEEType)
	b = le.AppendUint16(b, h.QESVN)
	b = le.AppendUint16(b, h.PCESVN)
	b = append(b, h.QEVendorID[:]...)
	return append(b, h.UserData[:]...)
}

// Marshal encodes r as a 384-byte report body; reserved bytes are zero.
func (r *ReportBody) Marshal() []byte {
	le := binary.LittleEndian
	b := make([]byte, reportBodySize)
	copy(b[0:16], r.CPUSVN[:])
	le.PutUint32(b[16:20], r.MiscSelect)
	copy(b[32:48], r.ISVExtProdID[:])
	copy(b[48:64], r.Attributes[:])
	copy(b[64:96], r.MREnclave[:])
	copy(b[128:160], r.MRSigner[:])
	copy(b[192:256], r.ConfigID[:])
	le.PutUint16(b[256:258], r.ISVProdID)
	le.PutUint16(b[258:260], r.ISVSVN)
	le.PutUint16(b[260:262], r.ConfigSVN)
	copy(b[304:320], r.ISVFamilyID[:])
	copy(b[320:384], r.ReportData[:])
	return b
}

// Marshal encodes q in the layout of its header's version: versions 4 and 5 wrap the QE report
// in certification data of type 6, version 3 does not; version 5 writes the body descriptor of
// BodyType. A TD body is written when TD is set, TD 1.5's when BodyType says so. It signs
// nothing: the signatures are written as they are, and trailing bytes are not.
func (q *Quote) Marshal() []byte {
	le := binary.LittleEndian
	inner := slices.Concat(q.QEReport.Marshal(), q.QEReportSignature[:])
	inner = le.AppendUint16(inner, uint16(len(q.QEAuthData)))
	inner = append(inner, q.QEAuthData...)
	inner = appendCertData(inner, certDataPCKChain, q.PCKChain)
	sig := slices.Concat(q.Signature[:], q.AttestationKey[:])
	if q.Header.Version >= 4 {
		sig = appendCertData(sig, certDataQEReport, inner)
	} else {
		sig = append(sig, inner...)
	}
	body := q.Body.Marshal()
	typ := uint16(BodySGX)
	if q.TD != nil {
		typ = BodyTD10
		if q.BodyType == BodyTD15 {
			typ = BodyTD15
		}
		body = q.TD.Marshal(map[uint16]int{BodyTD10: td10Size, BodyTD15: td15Size}[typ])
	}
	b := q.Header.Marshal()
	if q.Header.Version == 5 {
		b = le.AppendUint16(b, typ)
		b = le.AppendUint32(b, uint32(len(body)))
	}
	b = append(b, body...)
	b = le.AppendUint32(b, uint32(len(sig)))
	return append(b, sig...)
}

// appendCertData appends a certification data entry: type u16, size u32, data.
func appendCertData(b []byte, typ uint16, data []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, typ)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// Marshal encodes e as the DER value of a PCK certificate's SGX extension, with the members that
// ParsePCKExtension reads (the platform instance ID only when it is not zero).
func (e *PCKExtension) Marshal() ([]byte, error) {
	tcbOID := slices.Concat(OIDSGXExtensions, asn1.ObjectIdentifier{pckTCB})
	var tcb []any
	for _, svn := range e.TCBComponents {
		tcb = append(tcb, int(svn))
	}
	tcb = append(tcb, int(e.PCESVN), e.CPUSVN[:])
	tcbDER, err := marshalMembers(tcbOID, tcb...)
	if err != nil {
		return nil, err
	}
	members := []any{e.PPID[:], asn1.RawValue{FullBytes: tcbDER}, e.PCEID[:], e.FMSPC[:], asn1.Enumerated(e.SGXType)}
	if e.PlatformInstanceID != [16]byte{} {
		members = append(members, e.PlatformInstanceID[:])
	}
	return marshalMembers(OIDSGXExtensions, members...)
}

// marshalMembers encodes values as a SEQUENCE of {parent.N, value}, N counting from 1.
func marshalMembers(parent asn1.ObjectIdentifier, values ...any) ([]byte, error) {
	list := make([]sgxMember, len(values))
	for i, v := range values {
		der, err := asn1.Marshal(v)
		if err != nil {
			return nil, err
		}
		list[i] = sgxMember{ID: slices.Concat(parent, asn1.ObjectIdentifier{i + 1}), Value: asn1.RawValue{FullBytes: der}}
	}
	return asn1.Marshal(list)
}
