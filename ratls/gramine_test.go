package ratls

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"testing"

	"github.com/ppml/ppml/attest"
)

// The Gramine certificate's evidence verifies both ways, tagged and legacy, with its real quotes.
func TestGramineCertificate(t *testing.T) {
	c := gramineCert(t)
	reg := intelRegistry(t)
	for _, tc := range []struct {
		cert   *x509.Certificate
		format Format
	}{{c, Tagged}, {legacyOnly(c), Legacy}} {
		t.Run(tc.format.String(), func(t *testing.T) {
			ev, err := ExtractEvidence(tc.cert)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Format != tc.format || ev.Kind != attest.SGX {
				t.Errorf("evidence: %s %s, want %s sgx", ev.Format, ev.Kind, tc.format)
			}
			claims, err := Verify(context.Background(), tc.cert, reg, gramineTime)
			if err != nil {
				t.Fatal(err)
			}
			wantAdvisories := []string{"INTEL-SA-00586", "INTEL-SA-00614", "INTEL-SA-00615", "INTEL-SA-00657"}
			if claims.TCBStatus != "OutOfDate" || !claims.Debug || !slices.Equal(claims.AdvisoryIDs, wantAdvisories) {
				t.Errorf("claims: status %s, debug %v, advisories %v; want OutOfDate, debug, %v", claims.TCBStatus, claims.Debug, claims.AdvisoryIDs, wantAdvisories)
			}
			if got, want := claims.MREnclave.String(), "0866e7ca11b9f4efe4bf39b2607f4e1299f111920d96d95719080f01b62b7585"; got != want {
				t.Errorf("MRENCLAVE %s, want %s", got, want)
			}
			if !bytes.Equal(claims.ReportData[:32], ev.Binding[:]) || !bytes.Equal(claims.ReportData[32:], make([]byte, 32)) {
				t.Errorf("report data %s, want %x and zeros", claims.ReportData, ev.Binding)
			}
		})
	}
	// The two bindings are those the README lists.
	ev, _ := ExtractEvidence(c)
	legacy, _ := ExtractEvidence(legacyOnly(c))
	if hex.EncodeToString(ev.Binding[:4]) != "d8673446" || hex.EncodeToString(legacy.Binding[:4]) != "5a5a5b2d" {
		t.Errorf("bindings %x (tagged), %x (legacy)", ev.Binding, legacy.Binding)
	}
}

// ppml writes the claims and the tagged evidence exactly as Gramine does.
func TestGramineCBOR(t *testing.T) {
	c := gramineCert(t)
	ext := extension(c, oidTaggedEvidence)
	ev, err := ExtractEvidence(c)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := claimsBuffer(c.RawSubjectPublicKeyInfo)
	if err != nil {
		t.Fatal(err)
	}
	if len(claims) != 51 || !bytes.HasPrefix(claims, []byte("\xa1\x6bpubkey-hash\x58\x24\x82\x01\x58\x20")) {
		t.Errorf("claims %x: want 51 bytes, a1 6b \"pubkey-hash\" 58 24 82 01 58 20 ...", claims)
	}
	if got := sha256.Sum256(claims); got != ev.Binding {
		t.Errorf("SHA-256 of our claims %x, Gramine's %x", got, ev.Binding)
	}
	got, err := taggedEvidence(TagIntelQuote, ev.Data, claims)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ext) {
		t.Errorf("tagged evidence differs from Gramine's:\n ours     %x...\n Gramine's %x...", got[:16], ext[:16])
	}
}

// A certificate from NewCertificate has the layout of Gramine's, field by field.
func TestGramineLayout(t *testing.T) {
	g := gramineCert(t)
	p := newPlatform(t)
	ours := newSimCert(t, p).Leaf

	for _, c := range []*x509.Certificate{g, ours} {
		if !bytes.Equal(c.RawSubject, c.RawIssuer) {
			t.Errorf("subject %x and issuer %x differ", c.RawSubject, c.RawIssuer)
		}
	}
	if !bytes.Equal(ours.RawSubject, g.RawSubject) {
		t.Errorf("subject %x, Gramine's %x", ours.RawSubject, g.RawSubject)
	}
	if ours.Version != 3 || ours.SerialNumber.Int64() != 1 || g.SerialNumber.Int64() != 1 {
		t.Errorf("version %d, serial %v (Gramine's %v)", ours.Version, ours.SerialNumber, g.SerialNumber)
	}
	if !ours.NotBefore.Equal(g.NotBefore) || !ours.NotAfter.Equal(g.NotAfter) {
		t.Errorf("validity %v..%v, Gramine's %v..%v", ours.NotBefore, ours.NotAfter, g.NotBefore, g.NotAfter)
	}
	// The validity is encoded as UTCTime, as Gramine's: find the raw SEQUENCE in both.
	validity := []byte("\x30\x1e\x17\x0d010101000000Z\x17\x0d301231235959Z")
	if !bytes.Contains(ours.RawTBSCertificate, validity) || !bytes.Contains(g.RawTBSCertificate, validity) {
		t.Errorf("validity not encoded as %x", validity)
	}
	if ours.SignatureAlgorithm != x509.ECDSAWithSHA256 || g.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("signature algorithm %v, Gramine's %v", ours.SignatureAlgorithm, g.SignatureAlgorithm)
	}
	if err := ours.CheckSignature(ours.SignatureAlgorithm, ours.RawTBSCertificate, ours.Signature); err != nil {
		t.Errorf("self-signature: %v", err)
	}
	for _, c := range []*x509.Certificate{g, ours} {
		k, ok := c.PublicKey.(*ecdsa.PublicKey)
		if !ok || k.Curve != elliptic.P384() || len(c.RawSubjectPublicKeyInfo) != 120 {
			t.Errorf("key %T, SubjectPublicKeyInfo of %d bytes; want P-384, 120 bytes", c.PublicKey, len(c.RawSubjectPublicKeyInfo))
		}
	}

	// Extensions: the same, in the same order, none critical.
	ids := func(c *x509.Certificate) []string {
		var s []string
		for _, e := range c.Extensions {
			s = append(s, e.Id.String())
			if e.Critical {
				t.Errorf("extension %s is critical", e.Id)
			}
		}
		return s
	}
	want := []string{"2.5.29.19", "2.5.29.14", "2.5.29.35", "0.6.9.42.840.113741.1337.6", "2.23.133.5.4.9"}
	if got, gotG := ids(ours), ids(g); !slices.Equal(got, want) || !slices.Equal(gotG, want) {
		t.Errorf("extensions %v, Gramine's %v, want %v", got, gotG, want)
	}
	// The legacy extension's OID bytes are Gramine's mistake, reproduced.
	if !bytes.Contains(ours.RawTBSCertificate, []byte("\x06\x0b\x06\x09\x2a\x86\x48\x86\xf8\x4d\x8a\x39\x06")) {
		t.Error("legacy extension OID not encoded as 06 0b 06 09 2a 86 48 86 f8 4d 8a 39 06")
	}
	for _, c := range []*x509.Certificate{g, ours} {
		pub, _ := c.PublicKey.(*ecdsa.PublicKey).ECDH()
		keyID := sha1.Sum(pub.Bytes())
		if got := extension(c, oidBasicConstraints); !bytes.Equal(got, []byte{0x30, 0x00}) {
			t.Errorf("basicConstraints %x, want 3000", got)
		}
		if got, want := extension(c, oidSubjectKeyID), append([]byte{0x04, 0x14}, keyID[:]...); !bytes.Equal(got, want) {
			t.Errorf("subjectKeyIdentifier %x, want %x", got, want)
		}
		if got, want := extension(c, oidAuthorityKeyID), append([]byte{0x30, 0x16, 0x80, 0x14}, keyID[:]...); !bytes.Equal(got, want) {
			t.Errorf("authorityKeyIdentifier %x, want %x", got, want)
		}
	}

	// Tagged evidence: tag 60000, array of 2, the quote with a 2-byte length, 51 bytes of claims.
	for _, c := range []*x509.Certificate{g, ours} {
		ext := extension(c, oidTaggedEvidence)
		ev, err := ExtractEvidence(c)
		if err != nil {
			t.Fatal(err)
		}
		head := []byte{0xd9, 0xea, 0x60, 0x82, 0x59}
		head = binary.BigEndian.AppendUint16(head, uint16(len(ev.Data)))
		if !bytes.HasPrefix(ext, head) || len(ext) != len(head)+len(ev.Data)+2+51 || !bytes.Equal(ext[len(head)+len(ev.Data):][:2], []byte{0x58, 0x33}) {
			t.Errorf("tagged evidence of %d bytes starts %x, want %x, quote, 58 33, 51 bytes of claims", len(ext), ext[:7], head)
		}
		claims := ext[len(ext)-51:]
		want, _ := claimsBuffer(c.RawSubjectPublicKeyInfo)
		if !bytes.Equal(claims, want) {
			t.Errorf("claims %x, want %x", claims, want)
		}
	}
}
