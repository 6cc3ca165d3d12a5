package sgx

import (
	"slices"
	"testing"

	"github.com/ppml/ppml/collateral"
	"github.com/ppml/ppml/internal/testfiles"
)

// tdxSet returns the quote of a TDX set of the README and a Verifier for its collateral.
func tdxSet(t testing.TB, name string) (testfiles.TDXSet, []byte, *Verifier) {
	t.Helper()
	for _, s := range testfiles.TDXSets() {
		if s.Name != name {
			continue
		}
		b, err := collateral.ReadDir(s.CollateralDir(t, t.TempDir()), "")
		if err != nil {
			t.Fatal(err)
		}
		v, err := NewVerifier(Options{Collateral: b, SkipCRL: !s.CRLs})
		if err != nil {
			t.Fatal(err)
		}
		return s, s.ReadQuote(t), v
	}
	t.Fatalf("no set %s", name)
	return testfiles.TDXSet{}, nil, nil
}

// TestTDXSets verifies every TDX set of testdata/attestation with the verdict its README gives.
func TestTDXSets(t *testing.T) {
	for _, s := range testfiles.TDXSets() {
		t.Run(s.Name, func(t *testing.T) {
			s, quote, v := tdxSet(t, s.Name)
			vd, err := v.Verify(quote, s.At)
			if s.NotSupported {
				wantErr(t, err, StepTCBStatus, ErrTCBLevelNotSupported)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if vd.TCBStatus != s.Status || !slices.Equal(vd.AdvisoryIDs, s.Advisories) && len(s.Advisories)+len(vd.AdvisoryIDs) > 0 {
				t.Errorf("status %s %v, want %s %v", vd.TCBStatus, vd.AdvisoryIDs, s.Status, s.Advisories)
			}
			if vd.Debug() != s.Debug || vd.Quote.TD == nil {
				t.Errorf("debug %v", vd.Debug())
			}
			t.Logf("%s: %s, platform %s, module %+v, QE %s, TCB date %s, evaluation data %d, behind %+v",
				s.Name, vd.TCBStatus, vd.PlatformStatus, vd.Module, vd.QEStatus, vd.TCBDate.Format("2006-01-02"), vd.TCBEvaluationDataNumber, vd.Behind)
		})
	}
}
