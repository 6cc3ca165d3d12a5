package tdx

import (
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/abi"
	pb "github.com/google/go-tdx-guest/proto/tdx"

	"github.com/ppml/ppml/collateral"
	"github.com/ppml/ppml/internal/testfiles"
)

// Real quotes and Intel collateral; see testdata/attestation/README.md for the sets (TDX-1..11).
const testdata = "../../testdata/attestation/"

const (
	oasisQuote     = "tdx/oasis-core/quote_v4_tdx_ecdsa_p256.bin"
	oasisTrailing  = "tdx/oasis-core/quote_v4_tdx_ecdsa_p256_trailing.bin"
	oasisOutOfDate = "tdx/oasis-core/quote_v4_tdx_ecdsa_p256_out_of_date.bin"
	oasisTCB       = "tdx/oasis-core/tcb_info_v3_tdx_fmspc_C0806F000000.json"
	oasisTCB50806F = "tdx/oasis-core/tcb_info_v3_tdx_fmspc_50806F000000.json"
	oasisQE        = "tdx/oasis-core/qe_identity_v2_tdx2.json"
	oasisQE2023    = "tdx/oasis-core/qe_identity_v2_tdx.json"
	signingChain   = "sgx/oasis-core/tcb_info_v3_fmspc_00606A000000_certs.pem" // TCB Signing (2018) + root
	googleQuote    = "tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat"
	googleTCB      = "tdx/go-tdx-guest/sample_tcbInfo_response"
	googleQE       = "tdx/go-tdx-guest/sample_qeIdentity_response"
	googlePCKCRL   = "tdx/go-tdx-guest/pckcrl"
	googleRootCRL  = "tdx/go-tdx-guest/rootcrl.der"
	trusteeQuote4  = "tdx/trustee/tdx_quote_4.dat"
	trusteeQuote5  = "tdx/trustee/tdx_quote_5.dat"
	oeQuote        = "tdx/openenclave/tdx_quote.bin"
	oeQuoteV5      = "tdx/openenclave/tdx_quote-moduleupdate-seamldr5.dat"
	googleQuoteV5  = "tdx/go-tdx-guest/quote_v5_sample.dat"
	phalaQuote     = "tdx/phala-dcap-qvl/tdx_quote"
	phalaBundle    = "tdx/phala-dcap-qvl/tdx_quote_collateral.json"
)

// Verification times from the README.
var (
	tdx1Time = time.Unix(1725263032, 0)
	tdx2Time = time.Unix(1726917140, 0)
	tdx3Time = time.Unix(1687091776, 0)
	tdx4Time = time.Unix(1688173200, 0) // TDX-4, TDX-5, TDX-6
	tdx8Time = time.Unix(1750415547, 0)
)

func read(t testing.TB, name string) []byte {
	return testfiles.Read(t, filepath.Join(testdata, name))
}

// bundle makes a bundle without CRLs whose TCB info and QE identity share one issuer chain.
func bundle(t testing.TB, tcb, qe string) *collateral.Bundle {
	c := read(t, signingChain)
	return &collateral.Bundle{TCBInfo: read(t, tcb), TCBInfoIssuerChain: c, QEIdentity: read(t, qe), QEIdentityIssuerChain: c}
}

// oasisBundle is the collateral of TDX-1 and TDX-2.
func oasisBundle(t testing.TB) *collateral.Bundle { return bundle(t, oasisTCB, oasisQE) }

// googleBundle is the collateral of TDX-4, TDX-5 and TDX-6, with go-tdx-guest's CRLs. The PCK CRL
// issuer chain (Platform CA, root) is the upper part of the PCK chain in any of those quotes.
func googleBundle(t testing.TB) *collateral.Bundle {
	b := bundle(t, googleTCB, googleQE)
	b.PCKCRL = read(t, googlePCKCRL)
	b.RootCACRL = read(t, googleRootCRL)
	b.PCKCRLIssuerChain = pckCAChain(t, read(t, trusteeQuote4))
	return b
}

// pckCAChain returns the PEM chain above the PCK leaf in a quote.
func pckCAChain(t testing.TB, quote []byte) []byte {
	t.Helper()
	q, err := abi.QuoteToProto(quote)
	if err != nil {
		t.Fatal(err)
	}
	chain := q.(*pb.QuoteV4).GetSignedData().GetCertificationData().GetQeReportCertificationData().GetPckCertificateChainData().GetPckCertChain()
	_, rest := pem.Decode(chain)
	return rest
}

// phalaCollateral reads a dcap-qvl collateral bundle (JSON: PEM chains, hex DER CRLs, the signed
// JSON bodies as strings with their hex signatures) into a Bundle.
func phalaCollateral(t testing.TB, name string) *collateral.Bundle {
	t.Helper()
	var j struct {
		PCKCRLIssuerChain  string `json:"pck_crl_issuer_chain"`
		RootCACRL          string `json:"root_ca_crl"`
		PCKCRL             string `json:"pck_crl"`
		TCBInfoIssuerChain string `json:"tcb_info_issuer_chain"`
		TCBInfo            string `json:"tcb_info"`
		TCBInfoSignature   string `json:"tcb_info_signature"`
		QEIssuerChain      string `json:"qe_identity_issuer_chain"`
		QEIdentity         string `json:"qe_identity"`
		QEIdentitySig      string `json:"qe_identity_signature"`
	}
	if err := json.Unmarshal(read(t, name), &j); err != nil {
		t.Fatal(err)
	}
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return &collateral.Bundle{
		TCBInfo:               []byte(`{"tcbInfo":` + j.TCBInfo + `,"signature":"` + j.TCBInfoSignature + `"}`),
		TCBInfoIssuerChain:    []byte(j.TCBInfoIssuerChain),
		QEIdentity:            []byte(`{"enclaveIdentity":` + j.QEIdentity + `,"signature":"` + j.QEIdentitySig + `"}`),
		QEIdentityIssuerChain: []byte(j.QEIssuerChain),
		PCKCRL:                unhex(j.PCKCRL),
		PCKCRLIssuerChain:     []byte(j.PCKCRLIssuerChain),
		RootCACRL:             unhex(j.RootCACRL),
	}
}

// newVerifier returns a Verifier for b or fails the test.
func newVerifier(t testing.TB, b *collateral.Bundle, skipCRL bool) *Verifier {
	t.Helper()
	v, err := NewVerifier(Options{Collateral: b, SkipCRL: skipCRL})
	if err != nil {
		t.Fatal(err)
	}
	return v
}
