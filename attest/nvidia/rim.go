package nvidia

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/beevik/etree"
	"github.com/jonboulle/clockwork"
	dsig "github.com/russellhaering/goxmldsig"
)

// XML namespaces of NVIDIA's RIMs.
const (
	nsSWID   = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
	nsDSig   = "http://www.w3.org/2000/09/xmldsig#"
	nsSHA384 = "http://www.w3.org/2001/04/xmlenc#sha384"
)

// MaxRIMSize bounds the RIMs this package reads; NVIDIA's are about 20 KiB.
const MaxRIMSize = 4 << 20

// RIM is a Reference Integrity Manifest: the golden measurements of one driver or VBIOS version.
type RIM struct {
	ID      string // the SWID tag's tagId
	Name    string // the SWID tag's name, e.g. "GH100"
	Version string // colloquialVersion: the driver or VBIOS version it is for
	// Product is the chip it is for: Meta's product (the tag's name where Meta has none), as
	// "GH100" (Hopper) or "GB100" (Blackwell).
	Product      string
	Measurements []Golden
	// Chain is the signer's certificate chain as verified, leaf to root; nil from ParseRIM.
	Chain []*x509.Certificate
}

// Golden is one reference measurement of a RIM.
type Golden struct {
	Index  int // RIM index i; it is SPDM measurement block i+1
	Name   string
	Active bool
	Values [][]byte // the alternatives, any of which matches
}

// RIMOptions configure [VerifyRIM].
type RIMOptions struct {
	Time  time.Time      // required: the signer's chain must be valid then
	Roots *x509.CertPool // nil: RIMRoots
}

// ParseRIM reads a RIM's measurements without checking its signature (for display and tests;
// [VerifyRIM] is what trusts one).
func ParseRIM(b []byte) (*RIM, error) {
	doc, err := readXML(b)
	if err != nil {
		return nil, err
	}
	return parseSWID(doc.Root())
}

// VerifyRIM verifies a RIM's enveloped XML signature (C14N 1.1, ECDSA-SHA384, SHA-384 digest)
// with the leaf of the certificate chain in its KeyInfo, that chain up to opts.Roots at
// opts.Time, and returns the measurements read from the signed bytes only. Revocation of the
// chain is checked by [Verify].
func VerifyRIM(b []byte, opts RIMOptions) (*RIM, error) {
	if opts.Time.IsZero() {
		return nil, fmt.Errorf("no verification time given")
	}
	roots := opts.Roots
	if roots == nil {
		roots = RIMRoots()
	}
	doc, err := readXML(b)
	if err != nil {
		return nil, err
	}
	root := doc.Root()
	sig, err := theSignature(root)
	if err != nil {
		return nil, err
	}
	if err := checkAlgorithms(sig); err != nil {
		return nil, err
	}
	certs, err := keyInfoCerts(sig)
	if err != nil {
		return nil, err
	}
	chain, err := verifyChain(certs, roots, opts.Time)
	if err != nil {
		return nil, fmt.Errorf("RIM signer %q: %w", certs[0].Subject.CommonName, err)
	}
	if err := rawToDER(sig); err != nil {
		return nil, err
	}
	ctx := dsig.NewDefaultValidationContext(&dsig.MemoryX509CertificateStore{Roots: []*x509.Certificate{chain[0]}})
	ctx.Clock = dsig.NewFakeClock(clockwork.NewFakeClockAt(opts.Time))
	signed, err := ctx.Validate(root)
	if err != nil {
		return nil, fmt.Errorf("%w: XML signature: %v", ErrSignature, err)
	}
	r, err := parseSWID(signed)
	if err != nil {
		return nil, err
	}
	r.Chain = chain
	return r, nil
}

func readXML(b []byte) (*etree.Document, error) {
	if len(b) > MaxRIMSize {
		return nil, fmt.Errorf("%w: %d bytes, larger than %d", ErrFormat, len(b), MaxRIMSize)
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(b); err != nil {
		return nil, fmt.Errorf("%w: XML: %v", ErrFormat, err)
	}
	if doc.Root() == nil {
		return nil, fmt.Errorf("%w: no XML element", ErrFormat)
	}
	return doc, nil
}

// theSignature returns the one XML signature, a child of the root; a second anywhere is refused
// so that what is checked is what is read.
func theSignature(root *etree.Element) (*etree.Element, error) {
	var found []*etree.Element
	var walk func(e *etree.Element)
	walk = func(e *etree.Element) {
		if e.Tag == "Signature" && e.NamespaceURI() == nsDSig {
			found = append(found, e)
		}
		for _, c := range e.ChildElements() {
			walk(c)
		}
	}
	walk(root)
	if len(found) != 1 || found[0].Parent() != root {
		return nil, fmt.Errorf("%w: want one XML signature beneath the root, found %d", ErrFormat, len(found))
	}
	return found[0], nil
}

// child returns e's only child element named tag in namespace ns.
func child(e *etree.Element, ns, tag string) (*etree.Element, error) {
	var found *etree.Element
	for _, c := range e.ChildElements() {
		if c.Tag == tag && c.NamespaceURI() == ns {
			if found != nil {
				return nil, fmt.Errorf("%w: two %s elements in %s", ErrFormat, tag, e.Tag)
			}
			found = c
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: no %s element in %s", ErrFormat, tag, e.Tag)
	}
	return found, nil
}

// checkAlgorithms accepts only what NVIDIA signs with: ECDSA-SHA384 over SHA-384 digests.
func checkAlgorithms(sig *etree.Element) error {
	si, err := child(sig, nsDSig, "SignedInfo")
	if err != nil {
		return err
	}
	sm, err := child(si, nsDSig, "SignatureMethod")
	if err != nil {
		return err
	}
	if a := sm.SelectAttrValue("Algorithm", ""); a != dsig.ECDSASHA384SignatureMethod {
		return fmt.Errorf("%w: signature method %q (want ECDSA-SHA384)", ErrUnsupported, a)
	}
	for _, ref := range si.ChildElements() {
		if ref.Tag != "Reference" {
			continue
		}
		dm, err := child(ref, nsDSig, "DigestMethod")
		if err != nil {
			return err
		}
		if a := dm.SelectAttrValue("Algorithm", ""); a != "http://www.w3.org/2001/04/xmldsig-more#sha384" {
			return fmt.Errorf("%w: digest method %q (want SHA-384)", ErrUnsupported, a)
		}
	}
	return nil
}

// keyInfoCerts returns the certificates of the signature's KeyInfo, signer first.
func keyInfoCerts(sig *etree.Element) ([]*x509.Certificate, error) {
	ki, err := child(sig, nsDSig, "KeyInfo")
	if err != nil {
		return nil, err
	}
	xd, err := child(ki, nsDSig, "X509Data")
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for _, c := range xd.ChildElements() {
		if c.Tag != "X509Certificate" || c.NamespaceURI() != nsDSig {
			continue
		}
		der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(c.Text()), ""))
		if err != nil {
			return nil, fmt.Errorf("%w: KeyInfo certificate %d: %v", ErrFormat, len(certs)+1, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: KeyInfo certificate %d: %v", ErrFormat, len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no certificate in the signature's KeyInfo", ErrFormat)
	}
	return certs, nil
}

// rawToDER rewrites the SignatureValue from XML-DSig's r ‖ s (RFC 6931 §2.3.6) into the ASN.1
// form goxmldsig hands to crypto/x509. The value is outside what the signature covers.
func rawToDER(sig *etree.Element) error {
	sv, err := child(sig, nsDSig, "SignatureValue")
	if err != nil {
		return err
	}
	raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(sv.Text()), ""))
	if err != nil || len(raw) != SignatureSize {
		return fmt.Errorf("%w: SignatureValue is not a %d-byte ECDSA P-384 signature", ErrFormat, SignatureSize)
	}
	der, err := asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(raw[:48]), new(big.Int).SetBytes(raw[48:]),
	})
	if err != nil {
		return err
	}
	sv.SetText(base64.StdEncoding.EncodeToString(der))
	return nil
}

// parseSWID reads the SWID tag's identity and its Payload's Resource measurements.
func parseSWID(root *etree.Element) (*RIM, error) {
	if root.Tag != "SoftwareIdentity" || root.NamespaceURI() != nsSWID {
		return nil, fmt.Errorf("%w: root element %q is not a SWID SoftwareIdentity", ErrFormat, root.Tag)
	}
	r := &RIM{ID: root.SelectAttrValue("tagId", ""), Name: root.SelectAttrValue("name", "")}
	meta, err := child(root, nsSWID, "Meta")
	if err != nil {
		return nil, err
	}
	r.Version = strings.ToLower(meta.SelectAttrValue("colloquialVersion", ""))
	if r.Version == "" {
		return nil, fmt.Errorf("%w: Meta has no colloquialVersion", ErrFormat)
	}
	if r.Product = strings.ToUpper(meta.SelectAttrValue("product", r.Name)); r.Product == "" {
		return nil, fmt.Errorf("%w: Meta has no product and the tag no name", ErrFormat)
	}
	payload, err := child(root, nsSWID, "Payload")
	if err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	for _, res := range payload.ChildElements() {
		if res.Tag != "Resource" || res.NamespaceURI() != nsSWID {
			continue
		}
		g, err := parseResource(res)
		if err != nil {
			return nil, err
		}
		if seen[g.Index] {
			return nil, fmt.Errorf("%w: RIM index %d appears twice", ErrFormat, g.Index)
		}
		seen[g.Index] = true
		r.Measurements = append(r.Measurements, g)
	}
	if len(r.Measurements) == 0 {
		return nil, fmt.Errorf("%w: no measurements in the Payload", ErrFormat)
	}
	return r, nil
}

func parseResource(res *etree.Element) (Golden, error) {
	g := Golden{Name: res.SelectAttrValue("name", "")}
	idx, err := strconv.Atoi(res.SelectAttrValue("index", ""))
	if err != nil || idx < 0 || idx > 254 {
		return g, fmt.Errorf("%w: Resource %q: index %q", ErrFormat, g.Name, res.SelectAttrValue("index", ""))
	}
	g.Index = idx
	switch a := res.SelectAttrValue("active", ""); a {
	case "True", "true":
		g.Active = true
	case "False", "false":
	default:
		return g, fmt.Errorf("%w: Resource %d: active %q is neither True nor False", ErrFormat, idx, a)
	}
	alts, err := strconv.Atoi(res.SelectAttrValue("alternatives", ""))
	if err != nil || alts < 1 || alts > 64 {
		return g, fmt.Errorf("%w: Resource %d: alternatives %q", ErrFormat, idx, res.SelectAttrValue("alternatives", ""))
	}
	hashes := map[string]string{}
	for _, a := range res.Attr {
		if a.NamespaceURI() == nsSHA384 {
			hashes[a.Key] = a.Value
		}
	}
	if len(hashes) != alts {
		return g, fmt.Errorf("%w: Resource %d: %d SHA-384 values for %d alternatives", ErrFormat, idx, len(hashes), alts)
	}
	for i := 0; i < alts; i++ {
		h, ok := hashes["Hash"+strconv.Itoa(i)]
		v, err := hex.DecodeString(h)
		if !ok || err != nil || len(v) != 48 {
			return g, fmt.Errorf("%w: Resource %d: Hash%d is not a SHA-384 value in hex", ErrFormat, idx, i)
		}
		g.Values = append(g.Values, v)
	}
	return g, nil
}
