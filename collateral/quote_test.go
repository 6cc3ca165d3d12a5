package collateral

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// realQuotes are the real quotes of testdata/attestation (paths under its sgx folder) and their
// platforms: SGX v3, TDX v4 (one with trailing bytes) and v5 with TD 1.0 and TD 1.5 bodies.
var realQuotes = map[string]Platform{
	"mobilecoin-attestation/hw_quote.dat":                    {SGX, "00906ED50000", ProcessorCA},
	"oasis-core/quote_v3_ecdsa_p256_pck_chain.bin":           {SGX, "00606A000000", PlatformCA},
	"trustee/occlum_quote.dat":                               {SGX, "00606A000000", PlatformCA},
	"../tdx/go-tdx-guest/quote_v5_sample.dat":                {TDX, "90C06F000000", PlatformCA},
	"../tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat":          {TDX, "50806F000000", PlatformCA},
	"../tdx/oasis-core/quote_v4_tdx_ecdsa_p256.bin":          {TDX, "C0806F000000", PlatformCA},
	"../tdx/oasis-core/quote_v4_tdx_ecdsa_p256_trailing.bin": {TDX, "C0806F000000", PlatformCA},
	"../tdx/openenclave/tdx_quote-moduleupdate-seamldr5.dat": {TDX, "90C06F000000", PlatformCA},
	"../tdx/openenclave/tdx_quote_v5.bin":                    {TDX, "00806F050000", PlatformCA},
	"../tdx/phala-dcap-qvl/tdx_quote":                        {TDX, "B0C06F000000", PlatformCA},
	"../tdx/trustee/tdx_quote_5.dat":                         {TDX, "90C06F000000", PlatformCA},
}

func TestPlatformOfQuote(t *testing.T) {
	for name, want := range realQuotes {
		got, err := PlatformOfQuote(read(t, name))
		if err != nil || got != want {
			t.Errorf("%s: %v, %v; want %v", name, got, err, want)
		}
	}
}

func TestPlatformOfQuoteErrors(t *testing.T) {
	sgx := read(t, "mobilecoin-attestation/hw_quote.dat")
	v5 := read(t, "../tdx/openenclave/tdx_quote_v5.bin")
	alter := func(b []byte, f func([]byte)) []byte { b = bytes.Clone(b); f(b); return b }
	for _, tc := range []struct {
		name  string
		quote []byte
		want  string
	}{
		{"empty", nil, "not a DCAP quote: shorter than a quote header"},
		{"version 2", alter(sgx, func(b []byte) { b[0] = 2 }), "not a DCAP quote of version 3 to 5 (version 2)"},
		{"TDX quote v3", alter(sgx, func(b []byte) { b[4] = 0x81 }), "quote version 3 of TEE type 0x81 is neither SGX nor TDX"},
		{"body type 4", alter(v5, func(b []byte) { b[48] = 4 }), "quote body type 4 of 648 bytes"},
		{"wrong body size", alter(v5, func(b []byte) { b[50]++ }), "quote body type 3 of 649 bytes"},
		{"truncated", sgx[:len(sgx)-100], "quote signature data: the quote is shorter than its fields say"},
		{"QE report type", alter(v5, func(b []byte) { b[48+6+648+4+128] = 7 }), "certification data type 7, want 6"},
		{"PCK chain type", alter(sgx, func(b []byte) {
			// header, body, signature data length, signature and key, QE report and its
			// signature, then the QE authentication data and its length.
			off := 48 + 384 + 4 + 128 + 384 + 64
			off += 2 + int(binary.LittleEndian.Uint16(b[off:]))
			b[off] = 3
		}), "certification data type 3, want 5"},
		{"no PEM", bytes.ReplaceAll(sgx, []byte("-----BEGIN"), []byte("-----BEGXN")), "the quote's PCK chain holds no PEM certificate"},
		{"no PCK first", alter(sgx, func(b []byte) { copy(b[bytes.Index(b, []byte("-----BEGIN")):], "xxxxx") }),
			`the PCK certificate's issuer "Intel SGX Root CA" is neither the Processor nor the Platform CA`},
	} {
		if _, err := PlatformOfQuote(tc.quote); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
