package sgx

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ppml/ppml/collateral"
)

// realPlatforms are the real quotes of testdata/attestation and their platforms: SGX v3, TDX v4
// (one with trailing bytes) and v5 with TD 1.0 and TD 1.5 bodies.
var realPlatforms = map[string]collateral.Platform{
	mcQuote:                                {TEE: collateral.SGX, FMSPC: "00906ED50000", CA: collateral.ProcessorCA},
	oasisQuote:                             {TEE: collateral.SGX, FMSPC: "00606A000000", CA: collateral.PlatformCA},
	occlumQuote:                            {TEE: collateral.SGX, FMSPC: "00606A000000", CA: collateral.PlatformCA},
	"tdx/go-tdx-guest/quote_v5_sample.dat": {TEE: collateral.TDX, FMSPC: "90C06F000000", CA: collateral.PlatformCA},
	"tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat": {TEE: collateral.TDX, FMSPC: "50806F000000", CA: collateral.PlatformCA},
	tdxQuote: {TEE: collateral.TDX, FMSPC: "C0806F000000", CA: collateral.PlatformCA},
	"tdx/oasis-core/quote_v4_tdx_ecdsa_p256_trailing.bin": {TEE: collateral.TDX, FMSPC: "C0806F000000", CA: collateral.PlatformCA},
	"tdx/openenclave/tdx_quote-moduleupdate-seamldr5.dat": {TEE: collateral.TDX, FMSPC: "90C06F000000", CA: collateral.PlatformCA},
	"tdx/openenclave/tdx_quote_v5.bin":                    {TEE: collateral.TDX, FMSPC: "00806F050000", CA: collateral.PlatformCA},
	"tdx/phala-dcap-qvl/tdx_quote":                        {TEE: collateral.TDX, FMSPC: "B0C06F000000", CA: collateral.PlatformCA},
	"tdx/trustee/tdx_quote_5.dat":                         {TEE: collateral.TDX, FMSPC: "90C06F000000", CA: collateral.PlatformCA},
}

// TestPlatformOfQuote: the platform of each real quote, which is the one whose collateral the
// Intel verifier asks for: ppml collateral fetch --quote fetches what the verifier needs.
func TestPlatformOfQuote(t *testing.T) {
	for name, want := range realPlatforms {
		quote := read(t, name)
		got, err := PlatformOfQuote(quote)
		if err != nil || got != want {
			t.Errorf("%s: %v, %v; want %v", name, got, err, want)
		}
		var asked collateral.Platform
		iv := &IntelVerifier{TDX: want.TEE == collateral.TDX, Source: func(_ context.Context, p collateral.Platform) (*collateral.Bundle, error) {
			asked = p
			return nil, errors.New("none")
		}}
		// At the PCK leaf's own start, when the whole chain is valid.
		certs, _ := mustParse(t, quote).PCKCertificates()
		iv.Verify(context.Background(), quote, certs[0].NotBefore)
		if asked != want {
			t.Errorf("%s: the verifier asks for the collateral of %v, PlatformOfQuote says %v", name, asked, want)
		}
	}
}

func mustParse(t *testing.T, quote []byte) *Quote {
	t.Helper()
	q, err := ParseQuote(quote)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestPlatformOfQuoteErrors(t *testing.T) {
	sgx := read(t, mcQuote)
	for _, tc := range []struct {
		name  string
		quote []byte
		want  string
	}{
		{"empty", nil, "malformed"},
		{"version 2", append([]byte{2}, sgx[1:]...), "quote version 2: unsupported"},
		{"truncated", sgx[:len(sgx)-100], "malformed"},
		{"no PEM", bytes.ReplaceAll(sgx, []byte("-----BEGIN"), []byte("-----BEGXN")), "PCK chain"},
	} {
		if _, err := PlatformOfQuote(tc.quote); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// A PCK certificate is issued by the Processor or the Platform CA; the root CA is neither.
	certs, err := mustParse(t, sgx).PCKCertificates()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := platformOf(certs[2], false); err == nil || !strings.Contains(err.Error(), `issuer "Intel SGX Root CA" is neither the Processor nor the Platform CA`) {
		t.Errorf("root CA as PCK certificate: %v", err)
	}
}
