package nvidia

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	_ "embed"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

//go:embed nvidia_device_root.pem
var deviceRootPEM []byte

//go:embed nvidia_rim_root.pem
var rimRootPEM []byte

// DeviceRoots returns a new pool holding the NVIDIA Device Identity CA (SHA-256 fingerprint
// 102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48), the root of every genuine
// GPU's device certificate chain.
func DeviceRoots() *x509.CertPool { return pool(deviceRootPEM) }

// RIMRoots returns a new pool holding the NVIDIA CoRIM signing Root CA (SHA-256 fingerprint
// 12977b5115acb0381179279fffeb5a8c4d264971ebb32298023a465fa41df5d1), the root of the
// certificates that sign NVIDIA's RIMs.
func RIMRoots() *x509.CertPool { return pool(rimRootPEM) }

func pool(p []byte) *x509.CertPool {
	cp := x509.NewCertPool()
	if !cp.AppendCertsFromPEM(p) {
		panic("nvidia: embedded root certificate does not parse")
	}
	return cp
}

// oidTcbInfo is the TCG DICE TcbInfo extension, which carries a GPU's FWID.
var oidTcbInfo = asn1.ObjectIdentifier{2, 23, 133, 5, 4, 1}

var oidSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}

// ParseChain parses PEM certificates, leaf first.
func ParseChain(pemBytes []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: PEM block %q is not a CERTIFICATE", ErrFormat, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d: %v", ErrFormat, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: text after the last PEM certificate", ErrFormat)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no PEM certificate", ErrFormat)
	}
	return certs, nil
}

// verifyChain verifies certs (leaf first; the rest may hold the root) up to roots at t, and
// returns the chain it found, leaf to root.
func verifyChain(certs []*x509.Certificate, roots *x509.CertPool, t time.Time) ([]*x509.Certificate, error) {
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: t,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		if ce, ok := err.(x509.CertificateInvalidError); ok && ce.Reason == x509.Expired {
			return nil, fmt.Errorf("%w: %v", ErrExpired, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	return chains[0], nil
}

// LeafFWID returns the FWID a GPU's leaf certificate carries in its TcbInfo extension
// (2.23.133.5.4.1): Hopper's composite form SEQUENCE {version, SubjectPublicKeyInfo,
// FWID {hashAlg, digest}}, or a DICE TcbInfo whose fwids list holds a SHA-384 digest.
func LeafFWID(c *x509.Certificate) ([]byte, error) {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidTcbInfo) {
			if fwid := hopperFWID(e.Value); fwid != nil {
				return fwid, nil
			}
			if fwid := diceFWID(e.Value); fwid != nil {
				return fwid, nil
			}
			return nil, fmt.Errorf("%w: extension 2.23.133.5.4.1 of %q holds no SHA-384 FWID", ErrFormat, c.Subject.CommonName)
		}
	}
	return nil, fmt.Errorf("%w: certificate %q has no FWID extension (2.23.133.5.4.1): the chain must start with the GPU's leaf, the certificate that signed the evidence", ErrFormat, c.Subject.CommonName)
}

// HopperFWIDExtension returns the 2.23.133.5.4.1 extension of a Hopper GPU's leaf certificate
// in the composite form LeafFWID reads: SEQUENCE {version 1, the leaf's SubjectPublicKeyInfo,
// FWID {SHA-384, fwid}}. Simulated GPUs (attest/sim/gpu) and tests make leaves with it.
func HopperFWIDExtension(pub crypto.PublicKey, fwid []byte) (pkix.Extension, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return pkix.Extension{}, err
	}
	type fw struct {
		Alg    asn1.ObjectIdentifier
		Digest []byte
	}
	v, err := asn1.Marshal(struct {
		Version int
		SPKI    asn1.RawValue
		FWID    fw
	}{1, asn1.RawValue{FullBytes: spki}, fw{oidSHA384, fwid}})
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: oidTcbInfo, Value: v}, nil
}

func hopperFWID(v []byte) []byte {
	in := cryptobyte.String(v)
	var seq, spki, fwid cryptobyte.String
	var version int64
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&version) || !seq.ReadASN1(&spki, cbasn1.SEQUENCE) ||
		!seq.ReadASN1(&fwid, cbasn1.SEQUENCE) || !seq.Empty() {
		return nil
	}
	return readFWID(fwid)
}

// diceFWID reads fwids [6] IMPLICIT SEQUENCE OF FWID from a DiceTcbInfo.
func diceFWID(v []byte) []byte {
	in := cryptobyte.String(v)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil
	}
	for !seq.Empty() {
		var field cryptobyte.String
		var tag cbasn1.Tag
		if !seq.ReadAnyASN1(&field, &tag) {
			return nil
		}
		if tag != cbasn1.Tag(6).ContextSpecific().Constructed() {
			continue
		}
		for !field.Empty() {
			var fw cryptobyte.String
			if !field.ReadASN1(&fw, cbasn1.SEQUENCE) {
				return nil
			}
			if d := readFWID(fw); d != nil {
				return d
			}
		}
	}
	return nil
}

// readFWID returns the digest of FWID {hashAlg OID, digest OCTET STRING} when hashAlg is SHA-384.
func readFWID(fw cryptobyte.String) []byte {
	var alg asn1.ObjectIdentifier
	var digest []byte
	if !fw.ReadASN1ObjectIdentifier(&alg) || !fw.ReadASN1Bytes(&digest, cbasn1.OCTET_STRING) || !fw.Empty() {
		return nil
	}
	if !alg.Equal(oidSHA384) || len(digest) != 48 {
		return nil
	}
	return digest
}

// Arch tells the GPU architecture from the chip its certificate chain names in a word of a
// subject (see ProductArch), or "" when none says.
func Arch(chain []*x509.Certificate) string {
	for _, c := range chain {
		for word := range strings.FieldsSeq(c.Subject.CommonName) {
			if arch := ProductArch(word); arch != "" {
				return arch
			}
		}
	}
	return ""
}

// ProductArch returns the architecture of a chip as NVIDIA names it, in a RIM's product or a
// device certificate ("GH100": Hopper, "GB100" or "GB202": Blackwell); "" for a chip of neither.
func ProductArch(chip string) string {
	switch {
	case strings.HasPrefix(chip, "GH1"):
		return "Hopper"
	case strings.HasPrefix(chip, "GB1") || strings.HasPrefix(chip, "GB2"):
		return "Blackwell"
	}
	return ""
}
