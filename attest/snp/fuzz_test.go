package snp

import (
	"context"
	"testing"

	"github.com/google/go-sev-guest/abi"
)

// FuzzVerify checks that Verify never panics on arbitrary evidence (a report and a certificate
// table) and that whatever verifies carries claims of the right sizes and a status that fits its
// reasons.
func FuzzVerify(f *testing.F) {
	for _, r := range []string{googleReport, trusteeReport, vlekReport} {
		f.Add(read(f, r))
	}
	f.Add(withCerts(read(f, trusteeReport), read(f, trusteeVCEK), abi.VcekGUID))
	f.Add(withCerts(read(f, vlekReport), read(f, vlekCert), abi.VlekGUID))
	v := newVerifier(f, googleVCEK, trusteeVCEK)
	f.Fuzz(func(t *testing.T, evidence []byte) {
		c, err := v.Verify(context.Background(), evidence, vcekTime)
		if err != nil {
			return
		}
		if len(c.Measurement) != 48 || len(c.ReportData) != 64 || c.SNP == nil || len(c.SNP.ReportedTCB.Raw) != 8 || len(c.SNP.HostData) != 32 {
			t.Fatalf("claims %+v", c)
		}
		// A status is UpToDate without a reason, or ConfigurationNeeded with one.
		if (c.TCBStatus == UpToDate) != (len(c.SNP.StatusReasons) == 0) || c.TCBStatus != UpToDate && c.TCBStatus != ConfigurationNeeded {
			t.Fatalf("status %s, reasons %q", c.TCBStatus, c.SNP.StatusReasons)
		}
	})
}
