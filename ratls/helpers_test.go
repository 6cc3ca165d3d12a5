package ratls

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sgx"
	"github.com/ppml/ppml/attest/sim"
	"github.com/ppml/ppml/collateral"
	"github.com/ppml/ppml/internal/testfiles"
)

// Real attestation artefacts; see testdata/attestation/README.md for the facts.
const testdata = "../testdata/attestation/"

// gramineTime is when set SGX-4 (the Gramine certificate with the oasis-core collateral)
// verifies.
var gramineTime = time.Unix(1671497404, 0) // 2022-12-20T00:50:04Z

// simTime is when the simulated platforms of the tests are made; they verify from then on.
var simTime = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

var enclave = sim.Enclave{
	MREnclave: sha256.Sum256([]byte("workload")),
	MRSigner:  sha256.Sum256([]byte("signer")),
	ISVProdID: 7, ISVSVN: 3,
}

func readTestdata(t testing.TB, name string) []byte {
	return testfiles.Read(t, filepath.Join(testdata, name))
}

// gramineCert is Gramine's RA-TLS certificate from the CCC interoperability tests.
func gramineCert(t testing.TB) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(readTestdata(t, "ratls/interoperable-ra-tls/gramine-cert.pem"))
	if block == nil {
		t.Fatal("gramine-cert.pem: no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// intelRegistry verifies genuine SGX quotes with the oasis-core collateral of set SGX-4. The set
// has no CRLs, so revocation is not checked.
func intelRegistry(t testing.TB) attest.Registry {
	t.Helper()
	chain := readTestdata(t, "sgx/oasis-core/tcb_info_v3_fmspc_00606A000000_certs.pem")
	b := &collateral.Bundle{
		TCBInfo:               readTestdata(t, "sgx/oasis-core/tcb_info_v3_fmspc_00606A000000.json"),
		TCBInfoIssuerChain:    chain,
		QEIdentity:            readTestdata(t, "sgx/oasis-core/qe_identity_v2.json"),
		QEIdentityIssuerChain: chain,
	}
	source := func(context.Context, collateral.Platform) (*collateral.Bundle, error) { return b, nil }
	return attest.Registry{attest.SGX: &sgx.IntelVerifier{Source: source, SkipCRL: true}}
}

func newPlatform(t testing.TB) *sim.Platform {
	t.Helper()
	p, err := sim.Init(filepath.Join(t.TempDir(), "sim"), "", simTime)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func simRegistry(t testing.TB, p *sim.Platform) attest.Registry {
	t.Helper()
	v, err := p.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	return attest.Registry{attest.SGX: v}
}

// newSimCert makes an RA-TLS certificate with quotes from p.
func newSimCert(t testing.TB, p *sim.Platform) tls.Certificate {
	t.Helper()
	c, err := NewCertificate(sim.Attester{Platform: p, Enclave: enclave})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// extension returns the value of c's extension id, or nil.
func extension(c *x509.Certificate, id asn1.ObjectIdentifier) []byte {
	i := slices.IndexFunc(c.Extensions, func(e pkix.Extension) bool { return e.Id.Equal(id) })
	if i < 0 {
		return nil
	}
	return c.Extensions[i].Value
}

// withExtension returns a copy of c whose extension id holds value; nil value removes it.
// Verification ignores the certificate's signature, so the copy need not be signed again.
func withExtension(c *x509.Certificate, id asn1.ObjectIdentifier, value []byte) *x509.Certificate {
	d := *c
	d.Extensions = slices.DeleteFunc(slices.Clone(c.Extensions), func(e pkix.Extension) bool { return e.Id.Equal(id) })
	if value != nil {
		d.Extensions = append(d.Extensions, pkix.Extension{Id: id, Value: value})
	}
	return &d
}

// legacyOnly is c as a Gramine certificate from before the tagged evidence (v1.8).
func legacyOnly(c *x509.Certificate) *x509.Certificate {
	return withExtension(c, oidTaggedEvidence, nil)
}
