package ratls

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sgx"
	"github.com/ppml/ppml/attest/sim"
)

// Both quotes of a certificate from the simulated platform verify, and bind its key.
func TestSimCertificate(t *testing.T) {
	p := newPlatform(t)
	reg := simRegistry(t, p)
	c := newSimCert(t, p).Leaf
	for _, tc := range []struct {
		cert    *x509.Certificate
		format  Format
		binding [32]byte
	}{
		{c, Tagged, sha256.Sum256(extension(c, oidTaggedEvidence)[len(extension(c, oidTaggedEvidence))-51:])},
		{legacyOnly(c), Legacy, sha256.Sum256(c.RawSubjectPublicKeyInfo)},
	} {
		t.Run(tc.format.String(), func(t *testing.T) {
			ev, err := ExtractEvidence(tc.cert)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Format != tc.format || ev.Kind != attest.SGX || ev.Binding != tc.binding {
				t.Errorf("evidence %s %s binding %x, want %s sgx %x", ev.Format, ev.Kind, ev.Binding, tc.format, tc.binding)
			}
			claims, err := Verify(context.Background(), tc.cert, reg, simTime.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if claims.Platform != "simulated" || !bytes.Equal(claims.MREnclave, enclave.MREnclave[:]) || *claims.ISVProdID != 7 || claims.Debug || claims.TCBStatus != "UpToDate" {
				t.Errorf("claims %+v", claims)
			}
			if want := append(tc.binding[:], make([]byte, 32)...); !bytes.Equal(claims.ReportData, want) {
				t.Errorf("report data %s, want %x", claims.ReportData, want)
			}
		})
	}
}

// fakeTEE stands for kinds that have no simulated platform: its evidence is a header followed by
// the report data, and it verifies its own evidence.
type fakeTEE struct {
	kind   attest.Kind
	header []byte
}

func (f fakeTEE) Kind() attest.Kind { return f.kind }

func (f fakeTEE) Attest(rd attest.ReportData) ([]byte, error) {
	return append(slices.Clone(f.header), rd[:]...), nil
}

func (f fakeTEE) Verify(_ context.Context, evidence []byte, _ time.Time) (*attest.Claims, error) {
	if len(evidence) != len(f.header)+64 || !bytes.HasPrefix(evidence, f.header) {
		return nil, errors.New("not evidence of this fake TEE")
	}
	return &attest.Claims{TEE: f.kind, Platform: "fake", ReportData: evidence[len(f.header):]}, nil
}

var (
	fakeTDX = fakeTEE{attest.TDX, []byte{4, 0, 2, 0, 0x81, 0, 0, 0}} // quote v4, TEE type 0x81
	fakeSNP = fakeTEE{attest.SNP, []byte("SEV-SNP report")}
)

// TDX and SEV-SNP certificates carry tagged evidence only, under their kind's tag.
func TestOtherKinds(t *testing.T) {
	reg := attest.Registry{attest.TDX: fakeTDX, attest.SNP: fakeSNP}
	for _, tee := range []fakeTEE{fakeTDX, fakeSNP} {
		t.Run(string(tee.kind), func(t *testing.T) {
			c, err := NewCertificate(tee)
			if err != nil {
				t.Fatal(err)
			}
			if extension(c.Leaf, oidGramineQuote) != nil {
				t.Error("legacy SGX extension present")
			}
			ev, err := ExtractEvidence(c.Leaf)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Kind != tee.kind || ev.Tag != tagOf[tee.kind] {
				t.Errorf("evidence of kind %s, tag %d; want %s, %d", ev.Kind, ev.Tag, tee.kind, tagOf[tee.kind])
			}
			claims, err := Verify(context.Background(), c.Leaf, reg, simTime)
			if err != nil {
				t.Fatal(err)
			}
			if claims.TEE != tee.kind {
				t.Errorf("claims of %s", claims.TEE)
			}
		})
	}
	if _, err := NewCertificate(fakeTEE{kind: "cca"}); err == nil {
		t.Error("certificate for an unknown kind of TEE")
	}
}

type failingAttester struct{}

func (failingAttester) Kind() attest.Kind                        { return attest.SGX }
func (failingAttester) Attest(attest.ReportData) ([]byte, error) { return nil, errors.New("no quote") }

func TestAttesterFails(t *testing.T) {
	if _, err := NewCertificate(failingAttester{}); err == nil {
		t.Error("certificate without evidence")
	}
}

// selfSigned returns a certificate for key holding exts.
func selfSigned(t *testing.T, key any, pub any, exts ...pkix.Extension) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), RawSubject: gramineName, NotBefore: notBefore, NotAfter: notAfter, ExtraExtensions: exts}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRefused(t *testing.T) {
	p := newPlatform(t)
	reg := simRegistry(t, p)
	a := newSimCert(t, p).Leaf
	b := newSimCert(t, p).Leaf
	at := simTime.Add(time.Minute)

	tamper := func(ext []byte, at int) []byte {
		ext = slices.Clone(ext)
		ext[at] ^= 1
		return ext
	}
	tagged := extension(a, oidTaggedEvidence)
	// Offsets into the tagged extension: 7 bytes of CBOR head, then the quote; MRENCLAVE is at
	// 112 in the quote.
	const mrEnclave = 7 + 112
	// a's tagged evidence with b's quote: the claims fit a's key, the quote binds b's claims.
	bQuote := extension(b, oidTaggedEvidence)[7 : len(tagged)-53]
	quoteSwapped, err := taggedEvidence(TagIntelQuote, bQuote, tagged[len(tagged)-51:])
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	evidence := []pkix.Extension{{Id: oidGramineQuote, Value: extension(a, oidGramineQuote)}, {Id: oidTaggedEvidence, Value: tagged}}
	other := newPlatform(t)

	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		reg  attest.Registry
		want []error
	}{
		{"tampered tagged quote", withExtension(a, oidTaggedEvidence, tamper(tagged, mrEnclave)), reg, []error{ErrNotVerified, sgx.ErrSignature}},
		{"tampered legacy quote", legacyOnly(withExtension(a, oidGramineQuote, tamper(extension(a, oidGramineQuote), 112))), reg, []error{ErrNotVerified, sgx.ErrSignature}},
		{"tampered claims", withExtension(a, oidTaggedEvidence, tamper(tagged, len(tagged)-1)), reg, []error{ErrBinding}},
		{"tagged evidence of another key", withExtension(a, oidTaggedEvidence, extension(b, oidTaggedEvidence)), reg, []error{ErrBinding}},
		{"legacy quote of another key", legacyOnly(withExtension(a, oidGramineQuote, extension(b, oidGramineQuote))), reg, []error{ErrBinding}},
		{"quote of another key's claims", withExtension(a, oidTaggedEvidence, quoteSwapped), reg, []error{ErrBinding}},
		{"corrupt tagged evidence, valid legacy quote", withExtension(a, oidTaggedEvidence, tagged[:len(tagged)-1]), reg, []error{ErrMalformed}},
		{"no evidence", withExtension(legacyOnly(a), oidGramineQuote, nil), reg, []error{ErrNoEvidence}},
		{"RSA key", selfSigned(t, rsaKey, &rsaKey.PublicKey, evidence...), reg, []error{ErrUnsupported}},
		{"P-521 key", selfSigned(t, p521, &p521.PublicKey, evidence...), reg, []error{ErrUnsupported}},
		{"untrusted platform", a, simRegistry(t, other), []error{ErrNotVerified, sgx.ErrUntrusted}},
		{"no verifier for SGX", a, attest.Registry{}, []error{ErrNotVerified, attest.ErrUnknownKind}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims, err := Verify(context.Background(), tc.cert, tc.reg, at)
			if claims != nil {
				t.Errorf("claims %+v", claims)
			}
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Errorf("err = %v, want %v", err, want)
				}
			}
		})
	}
}

// Gramine's certificate, tampered with.
func TestGramineRefused(t *testing.T) {
	g := gramineCert(t)
	reg := intelRegistry(t)
	// Its evidence on a key of ours.
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	moved := selfSigned(t, key, &key.PublicKey, pkix.Extension{Id: oidGramineQuote, Value: extension(g, oidGramineQuote)}, pkix.Extension{Id: oidTaggedEvidence, Value: extension(g, oidTaggedEvidence)})
	for _, c := range []*x509.Certificate{moved, legacyOnly(moved)} {
		if _, err := Verify(context.Background(), c, reg, gramineTime); !errors.Is(err, ErrBinding) {
			t.Errorf("evidence moved to another key: err = %v", err)
		}
	}
	// The legacy quote verifies before its report data shows the other key: the error says
	// whose quote it is. (The tagged evidence's claims name the other key before that.)
	var be *BindingError
	if _, err := Verify(context.Background(), legacyOnly(moved), reg, gramineTime); !errors.As(err, &be) || be.Claims == nil || be.Claims.TEE != attest.SGX || len(be.Claims.MREnclave) != 32 {
		t.Errorf("legacy quote moved to another key: err = %v, want a BindingError with the quote's claims", err)
	}
	// After the collateral expired.
	if _, err := Verify(context.Background(), g, reg, gramineTime.AddDate(0, 1, 0)); !errors.Is(err, ErrNotVerified) || !errors.Is(err, sgx.ErrExpired) {
		t.Errorf("a month later: err = %v", err)
	}
}

// TestP256Certificate: a certificate with a P-256 key verifies like Gramine's P-384 ones; other
// curves are refused when making one.
func TestP256Certificate(t *testing.T) {
	p := newPlatform(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := NewCertificateWithKey(sim.Attester{Platform: p, Enclave: enclave}, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(context.Background(), cert.Leaf, simRegistry(t, p), simTime); err != nil {
		t.Fatal(err)
	}
	key521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if _, err := NewCertificateWithKey(sim.Attester{Platform: p}, key521); !errors.Is(err, ErrUnsupported) {
		t.Errorf("P-521: %v", err)
	}
}
