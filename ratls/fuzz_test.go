package ratls

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sgx"
)

// Errors from parsing untrusted evidence wrap one of these.
var parseErrors = []error{ErrNoEvidence, ErrMalformed, ErrUnsupported, ErrBinding}

func isParseError(err error) bool {
	return slices.ContainsFunc(parseErrors, func(e error) bool { return errors.Is(err, e) })
}

// FuzzTaggedEvidence parses tagged evidence for the Gramine certificate's key.
func FuzzTaggedEvidence(f *testing.F) {
	g := gramineCert(f)
	f.Add(extension(g, oidTaggedEvidence))
	h := sha256.Sum256(g.RawSubjectPublicKeyInfo)
	claims := cborHex(f, "a1"+pubKeyHashKey+pubKeyHashClaim(1, h[:]))
	for _, quote := range [][]byte{{3, 0, 2, 0, 0, 0, 0, 0}, fakeTDX.header} {
		b, err := taggedEvidence(TagIntelQuote, quote, claims)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := parseTagged(b, g.RawSubjectPublicKeyInfo)
		if err != nil {
			if ev != nil || !isParseError(err) {
				t.Fatalf("evidence %v, error %v", ev, err)
			}
			return
		}
		if tagOf[ev.Kind] != ev.Tag || ev.Format != Tagged {
			t.Fatalf("evidence of kind %s with tag %d", ev.Kind, ev.Tag)
		}
	})
}

// FuzzClaims checks the pubkey-hash claim of a claims buffer.
func FuzzClaims(f *testing.F) {
	h := sha256.Sum256(testSPKI)
	good := "a1" + pubKeyHashKey + pubKeyHashClaim(1, h[:])
	for _, s := range []string{good, good + "00", "a2" + pubKeyHashKey + pubKeyHashClaim(1, h[:]) + "65 6b65795f30 48 76616c75655f3000", "bf" + pubKeyHashKey + "40 ff"} {
		f.Add(cborHex(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := checkPubKeyHash(b, testSPKI); err != nil && !isParseError(err) {
			t.Fatal(err)
		}
	})
}

// quoteReportData stands for the SGX verifier: it returns the report data of anything that
// parses as a quote, without checking signatures, so that the fuzzer reaches the binding check.
type quoteReportData struct{}

func (quoteReportData) Kind() attest.Kind { return attest.SGX }

func (quoteReportData) Verify(_ context.Context, quote []byte, _ time.Time) (*attest.Claims, error) {
	q, err := sgx.ParseQuote(quote)
	if err != nil {
		return nil, err
	}
	return &attest.Claims{TEE: attest.SGX, ReportData: q.Body.ReportData[:]}, nil
}

// FuzzCertificate verifies client certificates as the server does, from their DER.
func FuzzCertificate(f *testing.F) {
	g := gramineCert(f)
	f.Add(g.Raw)
	f.Add(newSimCert(f, newPlatform(f)).Leaf.Raw)
	reg := attest.Registry{attest.SGX: quoteReportData{}, attest.TDX: fakeTDX, attest.SNP: fakeSNP}
	f.Fuzz(func(t *testing.T, der []byte) {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return // crypto/tls fails the handshake
		}
		claims, err := VerifyPeer(context.Background(), tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}, reg, gramineTime)
		if err != nil {
			if claims != nil || !isParseError(err) && !errors.Is(err, ErrNotVerified) {
				t.Fatalf("claims %v, error %v", claims, err)
			}
			return
		}
		ev, err := ExtractEvidence(c)
		if err != nil || !bytes.HasPrefix(claims.ReportData, ev.Binding[:]) {
			t.Fatalf("verified, but evidence %v, %v", ev, err)
		}
	})
}
