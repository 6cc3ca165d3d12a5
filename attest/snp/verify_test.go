package snp

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify/trust"
	"github.com/google/uuid"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/internal/testfiles"
)

// Real reports and AMD certificates; see testdata/attestation/README.md, section AMD SEV-SNP.
const testdata = "../../testdata/attestation/snp/"

const (
	googleReport  = "go-sev-guest/testdata/attestation.bin"
	googleVCEK    = "go-sev-guest/testdata/vcek.testcer"
	trusteeReport = "trustee/test-report.bin"
	trusteeVCEK   = "trustee/test-vcek.der"
	vlekReport    = "trustee/test-vlek-report.bin"
	vlekCert      = "trustee/test-vlek.der"
	badVCEKLegacy = "trustee/test-vcek-invalid-legacy.der"
	badVCEKNew    = "trustee/test-vcek-invalid-new.der"
)

var (
	vcekTime = time.Unix(1704067200, 0) // 2024-01-01: any time in 2024 suits the VCEK sets
	vlekTime = time.Unix(1750000000, 0) // 2025-06-15: the VLEK lasts 2024-12-10..2025-12-10
)

func read(t testing.TB, name string) []byte {
	return testfiles.Read(t, filepath.Join(testdata, name))
}

// newVerifier returns a Verifier with the embedded AMD roots and the given certificates, and no
// CRL (none of AMD's is recorded: testdata/attestation/README.md): revocation unchecked.
func newVerifier(t testing.TB, certs ...string) *Verifier {
	t.Helper()
	opts := Options{SkipCRL: true}
	for _, c := range certs {
		opts.Certificates = append(opts.Certificates, read(t, c))
	}
	v, err := NewVerifier(opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// withCerts appends a certificate table holding cert under guid to a report, as an extended
// report carries it.
func withCerts(report, cert []byte, guid string) []byte {
	table := abi.CertTable{Entries: []abi.CertTableEntry{{GUID: uuid.MustParse(guid), RawCert: cert}}}
	return append(bytes.Clone(report), table.Marshal()...)
}

func wantErr(t *testing.T, err error, text string) {
	t.Helper()
	if err == nil {
		t.Fatal("verified, want an error")
	}
	if !strings.Contains(err.Error(), text) {
		t.Fatalf("got %v, want it to say %q", err, text)
	}
	t.Logf("as expected: %v", err)
}

func TestVerifyReports(t *testing.T) {
	for _, tc := range []struct {
		name        string
		report      []byte
		v           *Verifier
		at          time.Time
		debug       bool
		measurement string
		reportData  string
		want        snpWant
	}{
		{"go-sev-guest VCEK", read(t, googleReport), newVerifier(t, googleVCEK, trusteeVCEK, vlekCert), vcekTime, true,
			"b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01", "0102030405", googleWant},
		{"trustee VCEK", read(t, trusteeReport), newVerifier(t, googleVCEK, trusteeVCEK, vlekCert), vcekTime, false,
			"a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c", "ec6c52d7", trusteeWant},
		{"trustee VLEK", read(t, vlekReport), newVerifier(t, googleVCEK, trusteeVCEK, vlekCert), vlekTime, false,
			"8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4e8c9af857f5ceeb5a493df2a570d7bf0", "819770b7", vlekWant},
		// The certificate in the evidence's certificate table, none configured.
		{"trustee VCEK in evidence", withCerts(read(t, trusteeReport), read(t, trusteeVCEK), abi.VcekGUID), newVerifier(t), vcekTime, false,
			"a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c", "ec6c52d7", trusteeWant},
		// A table without a VCEK: the configured one serves.
		{"trustee VCEK, table without one", withCerts(read(t, trusteeReport), []byte("ARK"), abi.ArkGUID), newVerifier(t, trusteeVCEK), vcekTime, false,
			"a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c", "ec6c52d7", trusteeWant},
		{"trustee VLEK in evidence", withCerts(read(t, vlekReport), read(t, vlekCert), abi.VlekGUID), newVerifier(t), vlekTime, false,
			"8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4e8c9af857f5ceeb5a493df2a570d7bf0", "819770b7", vlekWant},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.v.Verify(context.Background(), tc.report, tc.at)
			if err != nil {
				t.Fatal(err)
			}
			if c.TEE != attest.SNP || c.Platform != "amd" || len(c.AdvisoryIDs) != 0 {
				t.Errorf("claims %+v, want SNP, amd, no advisories", c)
			}
			tc.want.check(t, c)
			if c.Debug != tc.debug {
				t.Errorf("debug %v, want %v", c.Debug, tc.debug)
			}
			if c.Measurement.String() != tc.measurement {
				t.Errorf("measurement %s, want %s", c.Measurement, tc.measurement)
			}
			if len(c.ReportData) != 64 || !strings.HasPrefix(c.ReportData.String(), tc.reportData) {
				t.Errorf("report data %s, want %s...", c.ReportData, tc.reportData)
			}
		})
	}
}

// snpWant is what a real report's claims say beyond its measurement and report data; the
// values are in testdata/attestation/README.md, section AMD SEV-SNP.
type snpWant struct {
	status, key, line         string
	vmpl                      uint32
	reported, current, launch string
	firmware                  string
	reasons                   []string
}

var (
	// Reported, committed, current and launch TCB are all one: up to date.
	googleWant = snpWant{UpToDate, "vcek", "Milan", 0, "bootloader 2, tee 0, snp 5, microcode 68",
		"bootloader 2, tee 0, snp 5, microcode 68", "bootloader 2, tee 0, snp 5, microcode 68", "1.49.3", nil}
	// The microcode was updated (206) after the TCB was committed and reported (115).
	trusteeWant = snpWant{ConfigurationNeeded, "vcek", "Milan", 0, "bootloader 3, tee 0, snp 8, microcode 115",
		"bootloader 3, tee 0, snp 8, microcode 206", "bootloader 3, tee 0, snp 8, microcode 115", "1.52.4",
		[]string{"REPORTED_TCB (bootloader 3, tee 0, snp 8, microcode 115) is below CURRENT_TCB (bootloader 3, tee 0, snp 8, microcode 206)",
			"the firmware is provisional (committed 1.52.4 with TCB bootloader 3, tee 0, snp 8, microcode 115, current 1.52.4 with TCB bootloader 3, tee 0, snp 8, microcode 206)"}}
	// Microcode reported 217, committed 219 (the guest's launch TCB), current 220; at VMPL 1.
	vlekWant = snpWant{ConfigurationNeeded, "vlek", "Milan", 1, "bootloader 4, tee 0, snp 24, microcode 217",
		"bootloader 4, tee 0, snp 24, microcode 220", "bootloader 4, tee 0, snp 24, microcode 219", "1.55.29",
		[]string{"REPORTED_TCB (bootloader 4, tee 0, snp 24, microcode 217) is below CURRENT_TCB", "the firmware is provisional"}}
)

func (w snpWant) check(t *testing.T, c *attest.Claims) {
	t.Helper()
	s := c.SNP
	got := snpWant{c.TCBStatus, s.SigningKey, s.ProductLine, s.VMPL, s.ReportedTCB.String(), s.CurrentTCB.String(),
		s.LaunchTCB.String(), s.CurrentFirmware.String(), nil}
	reasons := w.reasons
	if w.reasons = nil; !reflect.DeepEqual(got, w) {
		t.Errorf("got %+v, want %+v", got, w)
	}
	if len(s.StatusReasons) != len(reasons) {
		t.Errorf("status reasons %q, want %d", s.StatusReasons, len(reasons))
	}
	for i, r := range reasons {
		if i < len(s.StatusReasons) && !strings.HasPrefix(s.StatusReasons[i], r) {
			t.Errorf("status reason %q, want it to start %q", s.StatusReasons[i], r)
		}
	}
	if s.Policy.Debug != c.Debug || len(s.HostData) != 32 || len(s.ReportedTCB.Raw) != 8 || s.ReportedTCB.FMC != nil {
		t.Errorf("SNP claims %+v", s)
	}
	if s.ChipIDPresent != (w.key == "vcek") {
		t.Errorf("chip ID present %v for a %s report", s.ChipIDPresent, w.key)
	}
}

func TestWrongCertificate(t *testing.T) {
	report := read(t, trusteeReport)
	// A VCEK of another chip: no configured certificate fits...
	_, err := newVerifier(t, googleVCEK).Verify(context.Background(), report, vcekTime)
	wantErr(t, err, "no VCEK certificate for chip")
	// ...and in the evidence, it did not sign the report.
	_, err = newVerifier(t).Verify(context.Background(), withCerts(report, read(t, googleVCEK), abi.VcekGUID), vcekTime)
	wantErr(t, err, "verify SEV-SNP report with go-sev-guest: report signature verification error")
	// Tampered VCEKs: the ASK's signature over them does not verify.
	for _, bad := range []string{badVCEKLegacy, badVCEKNew} {
		_, err = newVerifier(t).Verify(context.Background(), withCerts(report, read(t, bad), abi.VcekGUID), vcekTime)
		wantErr(t, err, "VCEK could not be verified by any trusted roots")
	}
	// A VLEK report with a VCEK in the evidence.
	_, err = newVerifier(t).Verify(context.Background(), withCerts(read(t, vlekReport), read(t, trusteeVCEK), abi.VcekGUID), vlekTime)
	wantErr(t, err, "no VLEK certificate")
	// Not a VCEK or VLEK at all.
	_, err = NewVerifier(Options{Certificates: [][]byte{[]byte("not a certificate")}})
	wantErr(t, err, "SEV-SNP certificate 0")
}

func TestTampered(t *testing.T) {
	v := newVerifier(t, trusteeVCEK)
	report := read(t, trusteeReport)
	for _, tc := range []struct {
		name string
		off  int
		text string
	}{
		{"report data", 0x50, "report signature verification error"},
		{"measurement", 0x90 + 47, "report signature verification error"},
		{"signature", 0x2A0, "report signature verification error"},
		{"reported TCB", 0x180, "no VCEK certificate"},
		{"reserved byte", 0x1A0 - 1, "parse SEV-SNP evidence"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bytes.Clone(report)
			r[tc.off] ^= 1
			_, err := v.Verify(context.Background(), r, vcekTime)
			wantErr(t, err, tc.text)
		})
	}
	_, err := v.Verify(context.Background(), report[:1000], vcekTime)
	wantErr(t, err, "parse SEV-SNP evidence: 1000 bytes, an attestation report has 1184")
	_, err = v.Verify(context.Background(), append(bytes.Clone(report), 1, 2, 3), vcekTime)
	wantErr(t, err, "parse SEV-SNP evidence: certificate table")
}

func TestVerifyTimes(t *testing.T) {
	// The VLEK expired 2025-12-10; the VCEK was issued 2023-01-24.
	_, err := newVerifier(t, vlekCert).Verify(context.Background(), read(t, vlekReport), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	wantErr(t, err, "certificate has expired or is not yet valid")
	_, err = newVerifier(t, trusteeVCEK).Verify(context.Background(), read(t, trusteeReport), time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC))
	wantErr(t, err, "certificate has expired or is not yet valid")
	_, err = newVerifier(t, trusteeVCEK).Verify(context.Background(), read(t, trusteeReport), time.Time{})
	wantErr(t, err, "no verification time")
}

func TestRoots(t *testing.T) {
	trustDir := testdata + "go-sev-guest/trust/"
	pem := func(name string) []byte {
		b, err := os.ReadFile(trustDir + name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// The testdata chains are those go-sev-guest embeds: given explicitly, they verify the same.
	milan, err := Roots("Milan", pem("ask_ark_milan.pem"), pem("ask_ark_milan_vlek.pem"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(Options{SkipCRL: true, Roots: map[string][]*trust.AMDRootCerts{"Milan": {milan}},
		Certificates: [][]byte{read(t, trusteeVCEK), read(t, vlekCert)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), read(t, trusteeReport), vcekTime); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), read(t, vlekReport), vlekTime); err != nil {
		t.Fatal(err)
	}

	// Genoa's roots in Milan's place; and Milan's VCEK chain alone for a VLEK.
	genoa, err := Roots("Milan", pem("ask_ark_genoa.pem"), pem("ask_ark_genoa_vlek.pem"))
	if err != nil {
		t.Fatal(err)
	}
	vcekOnly, err := Roots("Milan", pem("ask_ark_milan.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		roots  *trust.AMDRootCerts
		report string
		at     time.Time
		text   string
	}{
		{genoa, trusteeReport, vcekTime, "VCEK could not be verified by any trusted roots"},
		{vcekOnly, vlekReport, vlekTime, "root of trust missing intermediate certificate authority certificate for key VLEK"},
	} {
		v, err := NewVerifier(Options{SkipCRL: true, Roots: map[string][]*trust.AMDRootCerts{"Milan": {tc.roots}},
			Certificates: [][]byte{read(t, trusteeVCEK), read(t, vlekCert)}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(context.Background(), read(t, tc.report), tc.at)
		wantErr(t, err, tc.text)
	}

	_, err = Roots("Milan", []byte("junk"))
	wantErr(t, err, "Milan certificate chain")
}

func TestProduct(t *testing.T) {
	for _, tc := range []struct {
		product spb.SevProduct_SevProductName
		text    string
	}{
		{spb.SevProduct_SEV_PRODUCT_MILAN, ""},
		{spb.SevProduct_SEV_PRODUCT_GENOA, "VCEK cert product name"},
	} {
		v, err := NewVerifier(Options{SkipCRL: true, Product: &spb.SevProduct{Name: tc.product}, Certificates: [][]byte{read(t, trusteeVCEK)}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(context.Background(), read(t, trusteeReport), vcekTime)
		if tc.text == "" {
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		wantErr(t, err, tc.text)
	}
}

func TestVerifierKind(t *testing.T) {
	var v attest.Verifier = newVerifier(t, trusteeVCEK)
	if v.Kind() != attest.SNP {
		t.Fatalf("kind %q", v.Kind())
	}
	_, err := attest.Registry{attest.SNP: v}.Verify(context.Background(), attest.TDX, read(t, trusteeReport), vcekTime)
	if !errors.Is(err, attest.ErrUnknownKind) {
		t.Fatalf("got %v", err)
	}
}

func BenchmarkVerify(b *testing.B) {
	r := read(b, trusteeReport)
	v := newVerifier(b, trusteeVCEK)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), r, vcekTime); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}

// TestConcurrent runs one Verifier from several goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	v := newVerifier(t, googleVCEK, trusteeVCEK)
	reports := [][]byte{read(t, googleReport), read(t, trusteeReport)}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), reports[i%2], vcekTime); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
