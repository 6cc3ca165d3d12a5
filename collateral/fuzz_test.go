package collateral

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// FuzzResponse checks that the decoders of what a PCS or PCCS sends (issuer-chain headers, CRL
// bodies, the nextUpdate of JSON bodies) never panic, and that what they accept is well formed
// and decodes again to itself.
func FuzzResponse(f *testing.F) {
	for _, fx := range []fixture{sgxFixture(f), tdxFixture(f)} {
		b := fx.want
		f.Add(encodeURIComponent(b.TCBInfoIssuerChain), b.TCBInfo)
		f.Add(encodeURIComponent(b.PCKCRLIssuerChain), b.QEIdentity)
		f.Add(string(b.QEIdentityIssuerChain), b.PCKCRL)
		f.Add("%zz", []byte(hex.EncodeToString(b.RootCACRL)))
	}
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		if chain, err := decodeChain(header); err == nil {
			if again, err := decodeChain(string(chain)); err != nil || !bytes.Equal(again, chain) {
				t.Fatalf("decoded chain does not decode to itself: %v", err)
			}
		}
		if der, crl, err := decodeCRL(body); err == nil {
			if crl.NextUpdate.IsZero() {
				t.Fatal("accepted a CRL without nextUpdate")
			}
			if again, _, err := decodeCRL(der); err != nil || !bytes.Equal(again, der) {
				t.Fatalf("decoded CRL does not decode to itself: %v", err)
			}
		}
		for _, key := range []string{"tcbInfo", "enclaveIdentity"} {
			if m, err := readMeta(body, key); err == nil && m.NextUpdate.IsZero() {
				t.Fatalf("accepted a %s without nextUpdate", key)
			}
		}
	})
}
