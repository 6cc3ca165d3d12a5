package snp_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-sev-guest/verify/trust"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sim"
	"github.com/ppml/ppml/attest/snp"
	"github.com/ppml/ppml/internal/testfiles"
)

// The simulated SEV-SNP platform of attest/sim, made once (its RSA-4096 keys take seconds): its
// ARK signs the CRLs of these tests.
var platform struct {
	mu       sync.Mutex
	dir      string
	p        *sim.SNPPlatform
	roots    map[string][]*trust.AMDRootCerts
	ark, ask *x509.Certificate
	arkKey   crypto.Signer
	evidence []byte
}

var made = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) // when the platform was made
var at = made.Add(24 * time.Hour)                      // when its evidence is verified

func readPEM(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(platform.p.Dir, name))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", name)
	}
	return block.Bytes
}

// TestMain removes the simulated platform's folder after the tests, which share it.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ppml-snp-crl-")
	if err != nil {
		panic(err)
	}
	platform.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// simPlatform sets up the simulated platform's roots, ARK, ASK, ARK key and a report of it, once.
func simPlatform(t testing.TB) {
	t.Helper()
	platform.mu.Lock()
	defer platform.mu.Unlock()
	if platform.roots != nil {
		return
	}
	var err error
	if platform.p, err = sim.InitSNP(filepath.Join(platform.dir, "snp"), sim.SNPOptions{}, made); err != nil {
		t.Fatal(err)
	}
	if platform.ark, err = x509.ParseCertificate(readPEM(t, "ark.pem")); err != nil {
		t.Fatal(err)
	}
	if platform.ask, err = x509.ParseCertificate(readPEM(t, "ask.pem")); err != nil {
		t.Fatal(err)
	}
	k, err := x509.ParsePKCS8PrivateKey(readPEM(t, "ark.key"))
	if err != nil {
		t.Fatal(err)
	}
	platform.arkKey = k.(crypto.Signer)
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: platform.ask.Raw})
	chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: platform.ark.Raw})...)
	r, err := snp.Roots("Milan", chain)
	if err != nil {
		t.Fatal(err)
	}
	if platform.evidence, err = platform.p.Attester().Attest(attest.ReportData{1}); err != nil {
		t.Fatal(err)
	}
	platform.roots = map[string][]*trust.AMDRootCerts{"Milan": {r}}
}

// signCRL returns a DER CRL issued by issuer with key, current from thisUpdate to nextUpdate,
// revoking the serials given.
func signCRL(t testing.TB, issuer *x509.Certificate, key crypto.Signer, thisUpdate, nextUpdate time.Time, revoked ...*big.Int) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	for _, s := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: thisUpdate})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// crls names CRLs as files of a folder would be: 0.crl, 1.crl, ...
func crls(list ...[]byte) map[string][]byte {
	m := map[string][]byte{}
	for i, b := range list {
		m[fmt.Sprintf("%d.crl", i)] = b
	}
	return m
}

func verify(t *testing.T, opts snp.Options, evidence []byte, at time.Time) (*attest.Claims, error) {
	t.Helper()
	v, err := snp.NewVerifier(opts)
	if err != nil {
		t.Fatal(err)
	}
	return v.Verify(context.Background(), evidence, at)
}

// TestCRL checks the simulated platform's report against CRLs its ARK signed.
func TestCRL(t *testing.T) {
	simPlatform(t)
	current := func(revoked ...*big.Int) []byte {
		return signCRL(t, platform.ark, platform.arkKey, made, made.Add(7*24*time.Hour), revoked...)
	}
	pemCRL := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: current(big.NewInt(12345))})
	for _, c := range []struct {
		name       string
		crls       map[string][]byte
		skip       bool
		revocation string // the claims' when verified
		err        string // else the error
	}{
		{"current, another serial revoked", crls(current(big.NewInt(12345))), false, snp.RevocationGood, ""},
		{"PEM", crls(pemCRL), false, snp.RevocationGood, ""},
		{"ASK revoked", crls(current(platform.ask.SerialNumber)), false, "",
			"check SEV-SNP revocation: the ASK of Milan that signed the VCEK (serial " + platform.ask.SerialNumber.Text(16) + ") is revoked by AMD's CRL since"},
		{"ASK revoked, skip_crl", crls(current(platform.ask.SerialNumber)), true, "", "is revoked by AMD's CRL"},
		{"ASK revoked on one of two", crls(current(), current(platform.ask.SerialNumber)), false, "", "is revoked by AMD's CRL"},
		{"expired", crls(signCRL(t, platform.ark, platform.arkKey, made.Add(-48*time.Hour), made)), false, "",
			"the AMD CRL of Milan (issued 2024-12-30T00:00:00Z, next update 2025-01-01T00:00:00Z) is not current at 2025-01-02T00:00:00Z: fetch the current one"},
		{"not yet issued", crls(signCRL(t, platform.ark, platform.arkKey, at.Add(time.Hour), at.Add(48*time.Hour))), false, "", "is not current at"},
		{"none", nil, false, "", "no AMD CRL of Milan, so the revocation of its ASK cannot be checked: add the one AMD serves at https://kdsintf.amd.com/vcek/v1/Milan/crl to snp_crl (--snp-crl), or accept unchecked revocation with skip_crl (--skip-crl)"},
		{"none, skip_crl", nil, true, snp.RevocationUnchecked, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			claims, err := verify(t, snp.Options{Roots: platform.roots, CRLs: c.crls, SkipCRL: c.skip}, platform.evidence, at)
			switch {
			case c.err == "" && err != nil:
				t.Fatal(err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("got %v, want an error saying %q", err, c.err)
			case c.err == "" && claims.SNP.Revocation != c.revocation:
				t.Fatalf("revocation %q, want %q", claims.SNP.Revocation, c.revocation)
			}
		})
	}
}

// TestCRLNotAMDs: a CRL that no trusted ARK signed is refused when the verifier is made, whether
// another key signed it under the ARK's name or it is the simulated ARK's and the verifier trusts
// AMD's real roots.
func TestCRLNotAMDs(t *testing.T) {
	simPlatform(t)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ARK-Milan"}, NotBefore: made, NotAfter: made.AddDate(1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &other.PublicKey, other)
	if err != nil {
		t.Fatal(err)
	}
	forger, _ := x509.ParseCertificate(der)
	forged := signCRL(t, forger, other, made, at.Add(time.Hour))
	simulated := signCRL(t, platform.ark, platform.arkKey, made, at.Add(time.Hour))
	for name, opts := range map[string]snp.Options{
		"forged, simulated roots": {Roots: platform.roots, CRLs: crls(forged)},
		"simulated, AMD's roots":  {CRLs: crls(simulated)},
	} {
		if _, err := snp.NewVerifier(opts); err == nil || !strings.Contains(err.Error(), `AMD CRL 0.crl (issuer "ARK-Milan") is not signed by the ARK of any trusted product line`) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := snp.NewVerifier(snp.Options{CRLs: crls([]byte("not a CRL"))}); err == nil || !strings.Contains(err.Error(), "AMD CRL 0.crl: ") {
		t.Errorf("garbage: %v", err)
	}
}

// TestCRLRealReport: a real report (testdata/attestation/snp, trustee's Milan VCEK) under AMD's
// real roots, for which no CRL of AMD's is recorded: refused without one, unless skip_crl, which
// its claims say.
func TestCRLRealReport(t *testing.T) {
	report := testfiles.Read(t, "../../testdata/attestation/snp/trustee/test-report.bin")
	vcek := testfiles.Read(t, "../../testdata/attestation/snp/trustee/test-vcek.der")
	at := time.Unix(1704067200, 0)
	if _, err := verify(t, snp.Options{Certificates: [][]byte{vcek}}, report, at); err == nil || !strings.Contains(err.Error(), "no AMD CRL of Milan") {
		t.Errorf("without a CRL: %v", err)
	}
	c, err := verify(t, snp.Options{Certificates: [][]byte{vcek}, SkipCRL: true}, report, at)
	if err != nil || c.SNP.Revocation != snp.RevocationUnchecked {
		t.Errorf("with skip_crl: %+v, %v", c, err)
	}
}

// FuzzCRL gives NewVerifier CRL bytes: it never panics, and accepts only a CRL that the
// simulated ARK signed.
func FuzzCRL(f *testing.F) {
	simPlatform(f)
	good := signCRL(f, platform.ark, platform.arkKey, made, at, platform.ask.SerialNumber)
	f.Add(good)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: good}))
	f.Add([]byte("not a CRL"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := snp.NewVerifier(snp.Options{Roots: platform.roots, CRLs: crls(b)}); err != nil {
			return
		}
		if block, _ := pem.Decode(b); block != nil {
			b = block.Bytes
		}
		list, err := x509.ParseRevocationList(b)
		if err != nil || list.CheckSignatureFrom(platform.ark) != nil {
			t.Fatalf("a CRL the ARK did not sign was accepted: %x", b)
		}
	})
}
