package sim

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/snp"
)

var (
	testMeasurement = sha512.Sum384([]byte("test guest image"))
	testHostData    = [32]byte{0x40, 0x57}
)

// snpPlatforms are made once for the package's tests: their RSA-4096 keys take seconds.
var snpPlatforms = struct {
	sync.Mutex
	made []*SNPPlatform
}{}

func newSNPPlatform(t *testing.T, i int) *SNPPlatform {
	t.Helper()
	snpPlatforms.Lock()
	defer snpPlatforms.Unlock()
	for len(snpPlatforms.made) <= i {
		dir, err := filepath.Abs(filepath.Join(t.TempDir(), "snp"))
		if err != nil {
			t.Fatal(err)
		}
		p, err := InitSNP(dir, SNPOptions{Measurement: testMeasurement, HostData: testHostData}, now)
		if err != nil {
			t.Fatal(err)
		}
		snpPlatforms.made = append(snpPlatforms.made, p)
	}
	p, err := LoadSNP(snpPlatforms.made[i].Dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSNPReportVerifies checks that a simulated guest's evidence passes go-sev-guest's
// verification (attest/snp, the verifier of genuine reports) with the platform's ARK and ASK, and
// that the claims are the guest's: launch measurement, HOSTDATA, report data.
func TestSNPReportVerifies(t *testing.T) {
	p := newSNPPlatform(t, 0)
	v, err := LoadVerifier(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	rd := attest.ReportData{9, 8, 7}
	rd[63] = 1
	ev, err := p.Attester().Attest(rd)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), ev, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case c.TEE != attest.SNP || c.Platform != attest.Simulated || c.Debug:
		t.Errorf("claims %+v", c)
	case !bytes.Equal(c.Measurement, testMeasurement[:]) || !bytes.Equal(c.SNP.HostData, testHostData[:]):
		t.Errorf("measurement %s, host data %s", c.Measurement, c.SNP.HostData)
	case !bytes.Equal(c.ReportData, rd[:]):
		t.Errorf("report data %s", c.ReportData)
	}
	// The report is the real format: version 3, signed by the VCEK, which carries the chip's
	// HWID and the report's TCB in AMD's extensions.
	r, err := abi.ReportToProto(ev[:abi.ReportSize])
	if err != nil {
		t.Fatal(err)
	}
	exts, err := kds.VcekCertificateExtensions(p.vcek)
	if err != nil {
		t.Fatal(err)
	}
	if r.GetVersion() != 3 || kds.ProductLineFromFms(r.GetCpuid1EaxFms()) != "Milan" || !bytes.Equal(exts.HWID, r.GetChipId()) || uint64(exts.TCBVersion) != r.GetReportedTcb() {
		t.Errorf("report version %d, FMS %#x, VCEK extensions %+v", r.GetVersion(), r.GetCpuid1EaxFms(), exts)
	}
	// A changed byte of the signed part breaks the signature.
	bad := bytes.Clone(ev)
	bad[0x90] ^= 1 // MEASUREMENT
	if _, err := v.Verify(context.Background(), bad, now.Add(time.Minute)); err == nil {
		t.Error("a report with a changed measurement verified")
	}
	// Another platform's verifier, and one trusting AMD's genuine roots, refuse it.
	ov, err := LoadVerifier(newSNPPlatform(t, 1).Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ov.Verify(context.Background(), ev, now.Add(time.Minute)); !errors.Is(err, attest.ErrUntrustedRoot) {
		t.Errorf("another platform's verifier: %v, want ErrUntrustedRoot", err)
	}
	amd, err := snp.NewVerifier(snp.Options{Roots: map[string][]*trust.AMDRootCerts{"Milan": {trust.DefaultRootCerts["Milan"]}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := amd.Verify(context.Background(), ev, now.Add(time.Minute)); err == nil {
		t.Error("AMD's roots vouched for a simulated report")
	}
	// The folder of an SEV-SNP platform is not an Intel one, and the reverse.
	if _, err := Load(p.Dir); err == nil {
		t.Error("Load read an SEV-SNP platform")
	}
	if _, err := LoadSNP(newPlatform(t, "").Dir); err == nil {
		t.Error("LoadSNP read an SGX platform")
	}
}
