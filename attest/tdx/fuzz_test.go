package tdx

import (
	"context"
	"testing"

	"github.com/ppml/ppml/internal/testfiles"
)

// FuzzVerify checks that Verify never panics on arbitrary evidence (seeded with every TDX quote
// of testdata, versions 4 and 5) and that whatever verifies carries claims of the right sizes.
func FuzzVerify(f *testing.F) {
	for _, s := range testfiles.TDXSets() {
		f.Add(s.ReadQuote(f))
	}
	quote, at, v := setVerifier(f, "TDX-1")
	f.Add(quote)
	f.Fuzz(func(t *testing.T, evidence []byte) {
		c, err := v.Verify(context.Background(), evidence, at)
		if err != nil {
			return
		}
		if len(c.MRTD) != 48 || len(c.RTMRs) != 4 || len(c.ReportData) != 64 || c.TD == nil {
			t.Fatalf("claims %+v", c)
		}
	})
}
