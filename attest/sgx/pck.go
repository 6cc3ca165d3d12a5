package sgx

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"slices"
)

// OIDSGXExtensions is the Intel SGX extension of PCK certificates; its members are numbered
// below it.
var OIDSGXExtensions = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}

// Members of the SGX extension (the last arc below OIDSGXExtensions).
const (
	pckPPID               = 1
	pckTCB                = 2 // components .2.1-.2.16, PCESVN .2.17, CPUSVN .2.18
	pckPCEID              = 3
	pckFMSPC              = 4
	pckSGXType            = 5
	pckPlatformInstanceID = 6
)

// PCKExtension is the content of a PCK certificate's SGX extension (OID 1.2.840.113741.1.13.1).
type PCKExtension struct {
	PPID          [16]byte // encrypted platform provisioning ID
	TCBComponents [16]uint8
	PCESVN        uint16
	CPUSVN        [16]byte
	PCEID         [2]byte
	FMSPC         [6]byte // family-model-stepping-platform-custom SKU: selects the TCB info
	// SGXType is 0 (Standard), 1 (Scalable) or 2 (Scalable with integrity).
	SGXType            int
	PlatformInstanceID [16]byte // Platform CA certificates only; zero otherwise
}

// sgxMember is one member of the SGX extension or of its TCB sequence.
type sgxMember struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue
}

// PCKExtensionOf finds and parses the SGX extension of a PCK certificate.
func PCKExtensionOf(c *x509.Certificate) (*PCKExtension, error) {
	for _, e := range c.Extensions {
		if e.Id.Equal(OIDSGXExtensions) {
			return ParsePCKExtension(e.Value)
		}
	}
	return nil, fmt.Errorf("%w: PCK certificate has no SGX extension (%v)", ErrFormat, OIDSGXExtensions)
}

// ParsePCKExtension parses the DER value of the SGX extension. PPID, TCB (all 16 components,
// PCESVN and CPUSVN), PCE-ID, FMSPC and SGX type are required; unknown members are ignored.
func ParsePCKExtension(der []byte) (*PCKExtension, error) {
	members, err := parseMembers(der, OIDSGXExtensions)
	if err != nil {
		return nil, err
	}
	e := new(PCKExtension)
	for _, want := range []int{pckPPID, pckTCB, pckPCEID, pckFMSPC, pckSGXType} {
		if _, ok := members[want]; !ok {
			return nil, fmt.Errorf("%w: SGX extension lacks member %v.%d", ErrFormat, OIDSGXExtensions, want)
		}
	}
	if err := octets(members[pckPPID], e.PPID[:], "PPID"); err != nil {
		return nil, err
	}
	if err := octets(members[pckPCEID], e.PCEID[:], "PCE-ID"); err != nil {
		return nil, err
	}
	if err := octets(members[pckFMSPC], e.FMSPC[:], "FMSPC"); err != nil {
		return nil, err
	}
	var typ asn1.Enumerated
	if err := unmarshalExact(members[pckSGXType].FullBytes, &typ, "SGX type"); err != nil {
		return nil, err
	}
	e.SGXType = int(typ)
	if v, ok := members[pckPlatformInstanceID]; ok {
		if err := octets(v, e.PlatformInstanceID[:], "platform instance ID"); err != nil {
			return nil, err
		}
	}
	if err := e.parseTCB(members[pckTCB].FullBytes); err != nil {
		return nil, err
	}
	return e, nil
}

// parseTCB parses the TCB member: 16 component SVNs, PCESVN and CPUSVN.
func (e *PCKExtension) parseTCB(der []byte) error {
	tcbOID := slices.Concat(OIDSGXExtensions, asn1.ObjectIdentifier{pckTCB})
	members, err := parseMembers(der, tcbOID)
	if err != nil {
		return err
	}
	for i := 1; i <= 17; i++ {
		v, ok := members[i]
		if !ok {
			return fmt.Errorf("%w: SGX extension TCB lacks member %v.%d", ErrFormat, tcbOID, i)
		}
		var svn int
		if err := unmarshalExact(v.FullBytes, &svn, "TCB SVN"); err != nil {
			return err
		}
		switch {
		case i <= 16 && svn >= 0 && svn <= 0xff:
			e.TCBComponents[i-1] = uint8(svn)
		case i == 17 && svn >= 0 && svn <= 0xffff:
			e.PCESVN = uint16(svn)
		default:
			return fmt.Errorf("%w: SGX extension TCB member %d: SVN %d out of range", ErrFormat, i, svn)
		}
	}
	v, ok := members[18]
	if !ok {
		return fmt.Errorf("%w: SGX extension TCB lacks CPUSVN", ErrFormat)
	}
	return octets(v, e.CPUSVN[:], "CPUSVN")
}

// parseMembers parses a SEQUENCE of {OID, value} whose OIDs are parent.N, keyed by N. Duplicate
// or foreign OIDs and trailing bytes are errors.
func parseMembers(der []byte, parent asn1.ObjectIdentifier) (map[int]asn1.RawValue, error) {
	var list []sgxMember
	if err := unmarshalExact(der, &list, fmt.Sprint(parent)); err != nil {
		return nil, err
	}
	members := make(map[int]asn1.RawValue, len(list))
	for _, m := range list {
		if len(m.ID) != len(parent)+1 || !m.ID[:len(parent)].Equal(parent) {
			return nil, fmt.Errorf("%w: member %v does not belong to %v", ErrFormat, m.ID, parent)
		}
		n := m.ID[len(parent)]
		if _, dup := members[n]; dup {
			return nil, fmt.Errorf("%w: member %v appears twice", ErrFormat, m.ID)
		}
		members[n] = m.Value
	}
	return members, nil
}

// octets decodes an OCTET STRING of exactly len(dst) bytes into dst.
func octets(v asn1.RawValue, dst []byte, what string) error {
	var b []byte
	if err := unmarshalExact(v.FullBytes, &b, what); err != nil {
		return err
	}
	if len(b) != len(dst) {
		return fmt.Errorf("%w: SGX extension %s is %d bytes, want %d", ErrFormat, what, len(b), len(dst))
	}
	copy(dst, b)
	return nil
}

// unmarshalExact decodes DER into v and rejects trailing bytes.
func unmarshalExact(der []byte, v any, what string) error {
	rest, err := asn1.Unmarshal(der, v)
	if err != nil {
		return fmt.Errorf("%w: SGX extension %s: %v", ErrFormat, what, err)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: SGX extension %s: %d trailing bytes", ErrFormat, what, len(rest))
	}
	return nil
}
