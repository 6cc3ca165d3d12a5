package nvidia

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io/fs"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
	"golang.org/x/crypto/ocsp"
)

// A test PKI: certificates with P-384 keys, and what a GPU and NVIDIA would sign with them.

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial int64 = 100

func newCert(t testing.TB, parent *testCA, cn string, isCA bool, from, to time.Time, exts ...pkix.Extension) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn, Organization: []string{"Test"}},
		NotBefore: from, NotAfter: to, BasicConstraintsValid: true, IsCA: isCA,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtraExtensions: exts,
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	issuer, signer := tmpl, key
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: c, key: key}
}

var (
	t2020 = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	t2040 = time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)
	tNow  = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
)

func poolOf(cs ...*testCA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cs {
		p.AddCert(c.cert)
	}
	return p
}

func pemOf(cs ...*testCA) []byte {
	var b bytes.Buffer
	for _, c := range cs {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})
	}
	return b.Bytes()
}

// hopperFWIDExt is a leaf's 2.23.133.5.4.1 extension in Hopper's composite form.
func hopperFWIDExt(t testing.TB, pub *ecdsa.PublicKey, fwid []byte) pkix.Extension {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
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
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidTcbInfo, Value: v}
}

// testGPU is a device PKI and a GPU that signs evidence with its leaf.
type testGPU struct {
	root, ica, leaf *testCA
	fwid            []byte
	driver, vbios   string // vbios as 8 opaque bytes
	blocks          [][]byte
}

func newTestGPU(t testing.TB) *testGPU {
	g := &testGPU{fwid: bytes.Repeat([]byte{0xF1}, 48), driver: "550.90.07"}
	g.root = newCert(t, nil, "Test Device Identity CA", true, t2020, t2040)
	g.ica = newCert(t, g.root, "Test GH100 Identity", true, t2020, t2040)
	// The leaf's FWID extension needs its own key, so make the key first.
	leafKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	g.leaf = newLeafWithKey(t, g.ica, "GH100 A01 GSP FMC LF", leafKey, hopperFWIDExt(t, &leafKey.PublicKey, g.fwid))
	g.vbios = string([]byte{0x00, 0x9f, 0x00, 0x96, 0x01, 0, 0, 0})
	for i := 0; i < 8; i++ {
		g.blocks = append(g.blocks, bytes.Repeat([]byte{byte(0x10 + i)}, 48))
	}
	return g
}

func newLeafWithKey(t testing.TB, parent *testCA, cn string, key *ecdsa.PrivateKey, ext pkix.Extension) *testCA {
	t.Helper()
	serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: t2020, NotAfter: t2040, KeyUsage: x509.KeyUsageDigitalSignature, ExtraExtensions: []pkix.Extension{ext}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.cert, &key.PublicKey, parent.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key}
}

func (g *testGPU) chainPEM() []byte { return pemOf(g.leaf, g.ica, g.root) }

func opaqueField(t uint16, v []byte) []byte {
	b := binary.LittleEndian.AppendUint16(nil, t)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// evidence returns signed evidence for nonce, with trailing extra bytes after the signature.
func (g *testGPU) evidence(t testing.TB, nonce []byte, trailing int) []byte {
	b := []byte{0x11, 0xE0, 0x01, 0xFF}
	b = append(b, nonce...)
	b = append(b, 0)
	var rec []byte
	for i, v := range g.blocks {
		m := append([]byte{0x80}, binary.LittleEndian.AppendUint16(nil, uint16(len(v)))...)
		m = append(m, v...)
		rec = append(rec, byte(i+1), 1)
		rec = binary.LittleEndian.AppendUint16(rec, uint16(len(m)))
		rec = append(rec, m...)
	}
	b = append(b, 0x11, 0x60, 0, 0, byte(len(g.blocks)), byte(len(rec)), byte(len(rec)>>8), byte(len(rec)>>16))
	b = append(b, rec...)
	b = append(b, bytes.Repeat([]byte{0xAB}, 32)...)
	var op []byte
	op = append(op, opaqueField(OpaqueDriverVersion, []byte(g.driver+"\x00"))...)
	op = append(op, opaqueField(OpaqueVBIOSVersion, []byte(g.vbios))...)
	op = append(op, opaqueField(OpaqueProject, []byte("1010"))...)
	op = append(op, opaqueField(OpaqueProjectSKU, []byte("0200"))...)
	op = append(op, opaqueField(OpaqueChipSKU, []byte("882"))...)
	op = append(op, opaqueField(OpaqueFWID, g.fwid)...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(op)))
	b = append(b, op...)
	sum := sha512.Sum384(b)
	r, s, err := ecdsa.Sign(rand.Reader, g.leaf.key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, r.FillBytes(make([]byte, 48))...)
	b = append(b, s.FillBytes(make([]byte, 48))...)
	return append(b, make([]byte, trailing)...)
}

// testRIMPKI signs RIMs as NVIDIA does: root → CA → signer, C14N 1.1, ECDSA-SHA384.
type testRIMPKI struct{ root, ca, signer *testCA }

func newTestRIMPKI(t testing.TB, signerFrom, signerTo time.Time) *testRIMPKI {
	p := &testRIMPKI{}
	p.root = newCert(t, nil, "Test CoRIM signing Root CA", true, t2020, t2040)
	p.ca = newCert(t, p.root, "Test Reference Value CA", true, t2020, t2040)
	p.signer = newCert(t, p.ca, "Test RIM Signer", false, signerFrom, signerTo)
	return p
}

// rimXML writes an unsigned SWID tag: index i holds values[i] (nil: inactive).
func rimXML(version string, values map[int][][]byte, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<SoftwareIdentity xmlns="%s" xmlns:ns0="%s" xmlns:ns2="%s" name="GH100" tagId="test-%s" version="1.0">`+"\n", nsSWID, nsSWID, nsSHA384, version)
	fmt.Fprintf(&b, `    <ns0:Meta colloquialVersion="%s" product="GH100"/>`+"\n    <ns0:Payload>\n", version)
	for i := 0; i < n; i++ {
		vals, active := values[i], "True"
		if vals == nil {
			vals, active = [][]byte{make([]byte, 48)}, "False"
		}
		fmt.Fprintf(&b, `        <ns0:Resource type="Measurement" index="%d" active="%s" alternatives="%d"`, i, active, len(vals))
		for k, v := range vals {
			fmt.Fprintf(&b, ` ns2:Hash%d="%x"`, k, v)
		}
		fmt.Fprintf(&b, ` name="Measurement_%d" size="48"/>`+"\n", i)
	}
	b.WriteString("    </ns0:Payload>\n</SoftwareIdentity>\n")
	return b.String()
}

// sign signs a SWID tag with an enveloped signature in XML-DSig's raw r ‖ s form.
func (p *testRIMPKI) sign(t testing.TB, xml string) []byte {
	t.Helper()
	doc := etree.NewDocument()
	if err := doc.ReadFromString(xml); err != nil {
		t.Fatal(err)
	}
	ctx, err := dsig.NewSigningContext(p.signer.key, [][]byte{p.signer.cert.Raw, p.ca.cert.Raw, p.root.cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	ctx.Hash = crypto.SHA384
	ctx.Canonicalizer = dsig.MakeC14N11Canonicalizer()
	if err := ctx.SetSignatureMethod(dsig.ECDSASHA384SignatureMethod); err != nil {
		t.Fatal(err)
	}
	signed, err := ctx.SignEnveloped(doc.Root())
	if err != nil {
		t.Fatal(err)
	}
	sv := signed.FindElement("./Signature/SignatureValue")
	der, _ := base64.StdEncoding.DecodeString(sv.Text())
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &rs); err != nil {
		t.Fatal(err)
	}
	raw := append(rs.R.FillBytes(make([]byte, 48)), rs.S.FillBytes(make([]byte, 48))...)
	sv.SetText(base64.StdEncoding.EncodeToString(raw))
	doc.SetRoot(signed)
	out, err := doc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ocspFor returns an OCSP response for cert signed by its issuer.
func ocspFor(t testing.TB, cert *x509.Certificate, issuer *testCA, status, reason int, this, next time.Time) []byte {
	t.Helper()
	der, err := ocsp.CreateResponse(issuer.cert, issuer.cert, ocsp.Response{
		Status: status, SerialNumber: cert.SerialNumber, ThisUpdate: this, NextUpdate: next,
		RevokedAt: this, RevocationReason: reason,
	}, issuer.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// memOCSP is an OCSPSource in memory.
type memOCSP map[string][]byte

func (m memOCSP) OCSP(c *x509.Certificate) ([]byte, error) {
	if b, ok := m[OCSPFileName(c)]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("%s: %w", OCSPFileName(c), fs.ErrNotExist)
}
