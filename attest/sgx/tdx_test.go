package sgx

import (
	"slices"
	"strings"
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

// TestTDXChecks alters the parsed (already signature-checked) collateral of a Verifier, or the
// quote's parsed TD report where no signature is checked after, to reach each TDX check.
func TestTDXChecks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		set    string
		alter  func(v *Verifier)
		step   Step
		reason error
	}{
		{"SGX TCB info", "TDX-1", func(v *Verifier) { v.tcbInfo.ID = "SGX" }, StepTCBInfo, ErrMismatch},
		{"FMSPC", "TDX-1", func(v *Verifier) { v.tcbInfo.FMSPC[0] ^= 1 }, StepTCBInfo, ErrMismatch},
		{"SGX QE identity", "TDX-1", func(v *Verifier) { v.qeID.ID = "QE" }, StepQEIdentity, ErrMismatch},
		{"MRSIGNERSEAM", "TDX-1", func(v *Verifier) { v.tcbInfo.TDXModuleIdentities[1].MRSigner[0] = 1 }, StepTDXModule, ErrMismatch},
		{"SEAMATTRIBUTES", "TDX-1", func(v *Verifier) { v.tcbInfo.TDXModuleIdentities[1].Attributes[7] = 1 }, StepTDXModule, ErrMismatch},
		{"tdxModule without identity", "TDX-5", func(v *Verifier) { v.tcbInfo.TDXModule.MRSigner[47] = 1 }, StepTDXModule, ErrMismatch},
		{"no module identity", "TDX-1", func(v *Verifier) { v.tcbInfo.TDXModuleIdentities = v.tcbInfo.TDXModuleIdentities[:1] }, StepTDXModule, ErrMismatch},
		{"module below every level", "TDX-1", func(v *Verifier) {
			v.tcbInfo.TDXModuleIdentities[1].TCBLevels = v.tcbInfo.TDXModuleIdentities[1].TCBLevels[:1]
			v.tcbInfo.TDXModuleIdentities[1].TCBLevels[0].ISVSVN = 6
		}, StepTCBStatus, ErrTCBLevelNotSupported},
		{"module revoked", "TDX-1", func(v *Verifier) { v.tcbInfo.TDXModuleIdentities[1].TCBLevels[0].Status = StatusRevoked }, StepTCBStatus, ErrRevoked},
		{"TDX components below", "TDX-1", func(v *Verifier) {
			for i := range v.tcbInfo.TCBLevels {
				v.tcbInfo.TCBLevels[i].TDXComponents[2] = 8
			}
		}, StepTCBStatus, ErrTCBLevelNotSupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, quote, v := tdxSet(t, tc.set)
			tc.alter(v)
			_, err := v.Verify(quote, s.At)
			wantErr(t, err, tc.step, tc.reason)
			if !strings.HasPrefix(err.Error(), "TDX ") {
				t.Errorf("error %q does not name TDX", err)
			}
		})
	}
}

// TestTDXConvergence checks how the platform's, the module's and the QE's statuses converge, and
// the TD relaunch advice, on TDX-1 (TD 1.0, module TDX_01 ISVSVN 5) and TDX-11 (TD 1.5, module
// ISVSVN 4 at launch, 7 now).
func TestTDXConvergence(t *testing.T) {
	for _, tc := range []struct {
		name, set string
		alter     func(v *Verifier)
		status    string
	}{
		{"module out of date", "TDX-1", func(v *Verifier) { v.tcbInfo.TDXModuleIdentities[1].TCBLevels[0].Status = StatusOutOfDate }, StatusOutOfDate},
		{"module out of date, configuration needed", "TDX-1", func(v *Verifier) {
			v.tcbInfo.TDXModuleIdentities[1].TCBLevels[0].Status = StatusOutOfDate
			v.tcbInfo.TCBLevels[0].Status = StatusConfigurationNeeded
		}, StatusOutOfDateConfigurationNeeded},
		{"QE out of date", "TDX-1", func(v *Verifier) { v.qeID.TCBLevels[0].Status = StatusOutOfDate }, StatusOutOfDate},
		{"platform SW hardening", "TDX-1", func(v *Verifier) { v.tcbInfo.TCBLevels[0].Status = StatusSWHardeningNeeded }, StatusSWHardeningNeeded},
		{"TD 1.0 gets no relaunch advice", "TDX-1", func(v *Verifier) { v.tcbInfo.TDXModuleIdentities[1].TCBLevels[0].ISVSVN = 6 }, StatusOutOfDate},
		{"relaunch advised", "TDX-11", func(*Verifier) {}, StatusTDRelaunchAdvised},
		{"relaunch, configuration needed", "TDX-11", func(v *Verifier) { v.tcbInfo.TCBLevels[0].Status = StatusConfigurationNeeded }, StatusTDRelaunchAdvisedConfigurationNeeded},
		{"module now still behind", "TDX-11", func(v *Verifier) { v.tcbInfo.TDXModuleIdentities[1].TCBLevels[0].ISVSVN = 8 }, StatusOutOfDate},
		{"microcode now behind", "TDX-11", func(v *Verifier) { v.tcbInfo.TCBLevels[0].TDXComponents[2] = 4 }, StatusOutOfDate},
		{"no relaunch with an outdated QE", "TDX-11", func(v *Verifier) { v.qeID.TCBLevels[0].Status = StatusOutOfDate }, StatusOutOfDate},
		{"no relaunch with an outdated SGX level", "TDX-11", func(v *Verifier) { v.tcbInfo.TCBLevels[0].Status = StatusOutOfDate }, StatusOutOfDate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, quote, v := tdxSet(t, tc.set)
			tc.alter(v)
			vd, err := v.Verify(quote, s.At)
			if err != nil {
				t.Fatal(err)
			}
			if vd.TCBStatus != tc.status {
				t.Errorf("status %s, want %s (platform %s, module %+v, QE %s)", vd.TCBStatus, tc.status, vd.PlatformStatus, vd.Module, vd.QEStatus)
			}
		})
	}
}

// TestRelaunchModuleUnknown checks that a TEE_TCB_SVN2 naming a module major version without
// identity fails (no genuine quote has one: the signature covers TEE_TCB_SVN2).
func TestRelaunchModuleUnknown(t *testing.T) {
	_, quote, v := tdxSet(t, "TDX-11")
	q, err := ParseQuote(quote)
	if err != nil {
		t.Fatal(err)
	}
	q.TD.TEETCBSVN2[1] = 2
	_, err = v.relaunch(q.TD, StatusUpToDate, StatusOutOfDate)
	wantErr(t, err, StepTDXModule, ErrMismatch)
}
