package tdx

import (
	"context"
	"testing"

	"github.com/ppml/ppml/collateral"
)

// FuzzVerify checks that Verify never panics on arbitrary evidence and that whatever verifies
// carries claims of the right sizes.
func FuzzVerify(f *testing.F) {
	for _, q := range []string{oasisQuote, oasisTrailing, oasisOutOfDate, trusteeQuote4, oeQuote, googleQuoteV5} {
		f.Add(read(f, q))
	}
	v := newVerifier(f, oasisBundle(f), true)
	f.Fuzz(func(t *testing.T, evidence []byte) {
		c, err := v.Verify(context.Background(), evidence, tdx1Time)
		if err != nil {
			return
		}
		if len(c.MRTD) != 48 || len(c.RTMRs) != 4 || len(c.ReportData) != 64 || c.TCBStatus != "UpToDate" {
			t.Fatalf("claims %+v", c)
		}
	})
}

// FuzzCollateral checks that NewVerifier and Verify never panic on arbitrary TCB info and issuer
// chain bytes, the collateral this package parses itself.
func FuzzCollateral(f *testing.F) {
	b := oasisBundle(f)
	f.Add(b.TCBInfo, b.TCBInfoIssuerChain)
	quote := read(f, oasisQuote)
	f.Fuzz(func(t *testing.T, tcbInfo, chain []byte) {
		b := &collateral.Bundle{TCBInfo: tcbInfo, TCBInfoIssuerChain: chain, QEIdentity: b.QEIdentity, QEIdentityIssuerChain: b.QEIdentityIssuerChain}
		if v, err := NewVerifier(Options{Collateral: b, SkipCRL: true}); err == nil {
			v.Verify(context.Background(), quote, tdx1Time)
		}
	})
}
