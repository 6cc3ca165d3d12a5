package gpu

import (
	"crypto"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
)

// XML namespaces of NVIDIA's RIMs.
const (
	nsSWID   = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
	nsSHA384 = "http://www.w3.org/2001/04/xmlenc#sha384"
)

// unsignedRIM is a RIM's ID and its SWID tag before signing.
type unsignedRIM struct{ id, xml string }

// rims returns the driver RIM (indices 0-3 active) and the VBIOS RIM (4-7 active) of the
// simulated GPUs, named as NVIDIA's RIM service names its.
func (g *GPUs) rims() []unsignedRIM {
	s := &g.Settings
	vbiosID := strings.ToUpper(strings.ReplaceAll(s.VBIOSVersion, ".", ""))
	return []unsignedRIM{
		{"NV_GPU_DRIVER_GH100_" + s.DriverVersion, g.swid("NV_GPU_DRIVER_GH100_"+s.DriverVersion, s.DriverVersion, 0, blocks/2)},
		{"NV_GPU_VBIOS_1010_0200_882_" + vbiosID, g.swid("NV_GPU_VBIOS_1010_0200_882_"+vbiosID, s.VBIOSVersion, blocks/2, blocks)},
	}
}

// swid writes a SWID tag for version whose indices from..to-1 are active with the golden
// measurements; the others are listed inactive.
func (g *GPUs) swid(id, version string, from, to int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<SoftwareIdentity xmlns="%s" xmlns:ns0="%s" xmlns:ns2="%s" name="GH100" tagId="%s" version="1.0">`+"\n", nsSWID, nsSWID, nsSHA384, id)
	fmt.Fprintf(&b, `  <ns0:Meta colloquialVersion="%s" product="GH100" revision="ppml simulated"/>`+"\n  <ns0:Payload>\n", version)
	for i, v := range g.Settings.Measurements {
		active := "False"
		if from <= i && i < to {
			active = "True"
		}
		fmt.Fprintf(&b, `    <ns0:Resource type="Measurement" index="%d" active="%s" alternatives="1" ns2:Hash0="%s" name="Measurement_%d" size="48"/>`+"\n", i, active, v, i)
	}
	b.WriteString("  </ns0:Payload>\n</SoftwareIdentity>\n")
	return b.String()
}

// signRIM signs a SWID tag as NVIDIA signs its RIMs: an enveloped XML signature, C14N 1.1,
// ECDSA-SHA384 in XML-DSig's raw r ‖ s form, the signer's chain in KeyInfo.
func signRIM(xml string, signer, ca, root *issued) ([]byte, error) {
	doc := etree.NewDocument()
	if err := doc.ReadFromString(xml); err != nil {
		return nil, err
	}
	ctx, err := dsig.NewSigningContext(signer.key, [][]byte{signer.cert.Raw, ca.cert.Raw, root.cert.Raw})
	if err != nil {
		return nil, err
	}
	ctx.Hash = crypto.SHA384
	ctx.Canonicalizer = dsig.MakeC14N11Canonicalizer()
	if err := ctx.SetSignatureMethod(dsig.ECDSASHA384SignatureMethod); err != nil {
		return nil, err
	}
	signed, err := ctx.SignEnveloped(doc.Root())
	if err != nil {
		return nil, err
	}
	// goxmldsig writes ECDSA signatures in ASN.1; XML-DSig (RFC 6931) wants r ‖ s.
	sv := signed.FindElement("./Signature/SignatureValue")
	if sv == nil {
		return nil, fmt.Errorf("no SignatureValue in the signed RIM")
	}
	der, err := base64.StdEncoding.DecodeString(sv.Text())
	if err != nil {
		return nil, err
	}
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &rs); err != nil {
		return nil, err
	}
	sv.SetText(base64.StdEncoding.EncodeToString(append(rs.R.FillBytes(make([]byte, 48)), rs.S.FillBytes(make([]byte, 48))...)))
	doc.SetRoot(signed)
	return doc.WriteToBytes()
}
