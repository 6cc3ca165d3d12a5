package sgx

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ppml/ppml/collateral"
	"github.com/ppml/ppml/internal/testfiles"
)

// Real quotes and Intel collateral; see testdata/attestation/README.md for the facts.
const testdata = "../../testdata/attestation/"

const (
	oasisQuote   = "sgx/oasis-core/quote_v3_ecdsa_p256_pck_chain.bin"
	oasisTCB     = "sgx/oasis-core/tcb_info_v3_fmspc_00606A000000.json"
	oasisQE      = "sgx/oasis-core/qe_identity_v2.json"
	oasisChain   = "sgx/oasis-core/tcb_info_v3_fmspc_00606A000000_certs.pem"
	oasisBad     = "sgx/oasis-core/tcb_info_v3_fmspc_00606A000000_certs_bad.pem"
	occlumQuote  = "sgx/trustee/occlum_quote.dat"
	mcQuote      = "sgx/mobilecoin-attestation/hw_quote.dat"
	mcTCB        = "sgx/mobilecoin-attestation/fmspc_00906ED50000_2023_07_12.json"
	mcQE         = "sgx/mobilecoin-attestation/qe_identity.json"
	mcChain      = "sgx/mobilecoin-attestation/tcb_signer.pem"
	mcPCKCRL     = "sgx/mobilecoin-attestation/processor_crl.der"
	mcProcCA     = "sgx/mobilecoin-attestation/processor_ca.pem"
	mcRootCRL    = "sgx/mobilecoin-attestation/root_crl.der"
	gramineCert  = "ratls/interoperable-ra-tls/gramine-cert.pem"
	ratsTLSCert  = "ratls/interoperable-ra-tls/rats-tls-cert.pem"
	tdxQE        = "tdx/oasis-core/qe_identity_v2_tdx.json"
	tdxQuote     = "tdx/oasis-core/quote_v4_tdx_ecdsa_p256.bin"
	nvidiaRoot   = "roots/nvidia_device_root.pem"
	intelRootPEM = "roots/trusted_root.pem"
)

// Verification times from the README.
var (
	sgx1Time = time.Unix(1671497404, 0) // SGX-1, SGX-4, SGX-5
	sgx2Time = time.Unix(1689281305, 0)
	sgx3Time = time.Unix(1682524800, 0)
)

func read(t testing.TB, name string) []byte {
	return testfiles.Read(t, filepath.Join(testdata, name))
}

// bundle makes a bundle whose TCB info and QE identity share one issuer chain.
func bundle(t testing.TB, tcb, qe, chain string) *collateral.Bundle {
	c := read(t, chain)
	return &collateral.Bundle{TCBInfo: read(t, tcb), TCBInfoIssuerChain: c, QEIdentity: read(t, qe), QEIdentityIssuerChain: c}
}

func oasisBundle(t testing.TB) *collateral.Bundle { return bundle(t, oasisTCB, oasisQE, oasisChain) }

// mobilecoinBundle is SGX-2's collateral with both CRLs.
func mobilecoinBundle(t testing.TB) *collateral.Bundle {
	b := bundle(t, mcTCB, mcQE, mcChain)
	b.PCKCRL = read(t, mcPCKCRL)
	b.PCKCRLIssuerChain = slices.Concat(read(t, mcProcCA), []byte("\n"), read(t, intelRootPEM)) // the CA file has no final newline
	b.RootCACRL = read(t, mcRootCRL)
	return b
}

// Quote-carrying extensions of RA-TLS certificates.
var (
	// Gramine's legacy extension: 1.2.840.113741.1337.6 meant, but its encoded OID bytes were
	// used as the content, which decodes to 0.6.9.42.840.113741.1337.6.
	oidGramineQuote = asn1.ObjectIdentifier{0, 6, 9, 42, 840, 113741, 1337, 6}
	// TCG DICE tagged evidence: CBOR tag 60000 [bstr quote, bstr claims].
	oidTaggedEvidence = asn1.ObjectIdentifier{2, 23, 133, 5, 4, 9}
)

// ratlsQuotes returns the quotes in an RA-TLS certificate: the legacy extension's raw quote and
// the quote inside the CBOR tagged evidence, keyed by extension name.
func ratlsQuotes(t testing.TB, name string) map[string][]byte {
	t.Helper()
	block, _ := pem.Decode(read(t, name))
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	quotes := map[string][]byte{}
	for _, e := range c.Extensions {
		switch {
		case e.Id.Equal(oidGramineQuote):
			quotes["legacy"] = e.Value
		case e.Id.Equal(oidTaggedEvidence):
			// d9 ea60 (tag 60000), 82 (array of 2), 59 hi lo (byte string of u16 length).
			v := e.Value
			if len(v) < 7 || string(v[:5]) != "\xd9\xea\x60\x82\x59" {
				t.Fatalf("%s: unexpected tagged evidence prefix %x", name, v[:min(len(v), 7)])
			}
			n := int(binary.BigEndian.Uint16(v[5:7]))
			quotes["tagged"] = v[7 : 7+n]
		}
	}
	if len(quotes) == 0 {
		t.Fatalf("%s: no quote extension", name)
	}
	return quotes
}

// sgxExtension returns the DER value of a PCK certificate's SGX extension.
func sgxExtension(t testing.TB, c *x509.Certificate) []byte {
	t.Helper()
	for _, e := range c.Extensions {
		if e.Id.Equal(OIDSGXExtensions) {
			return e.Value
		}
	}
	t.Fatalf("%s: no SGX extension", c.Subject.CommonName)
	return nil
}
