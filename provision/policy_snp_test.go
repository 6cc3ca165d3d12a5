package provision

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/snp"
	"github.com/ppml/ppml/internal/testfiles"
)

// snpClaims verifies a real SEV-SNP report of testdata/attestation/snp with its certificate, as
// ppml serve does, and returns its claims.
// No CRL of AMD's is recorded (testdata/attestation/README.md): revocation is unchecked.
func snpClaims(t *testing.T, report, cert string, at time.Time) *attest.Claims {
	t.Helper()
	dir := filepath.Join(testfiles.Attestation, "snp")
	v, err := snp.NewVerifier(snp.Options{Certificates: [][]byte{testfiles.Read(t, filepath.Join(dir, cert))}, SkipCRL: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), testfiles.Read(t, filepath.Join(dir, report)), at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// snpWorkload loads a configuration with one SEV-SNP workload of the given settings, as ppml
// serve does, and returns its policy. Settings without min_tcb get min_tcb = {}, any TCB.
func snpWorkload(t *testing.T, measurement, settings string) Policy {
	t.Helper()
	if !strings.Contains(settings, "min_tcb") {
		settings += "min_tcb = {}\n"
	}
	c, err := LoadConfig(writeConfig(t, "[[workload]]\nname = \"cvm\"\ntee = \"snp\"\nkeys = [\"k\"]\nmeasurement = [\""+measurement+"\"]\n"+settings))
	if err != nil {
		t.Fatal(err)
	}
	return c.Workloads
}

// TestAdmitSNP judges the real reports with SEV-SNP policies: their status (testdata README),
// min_tcb, min_firmware, vmpl, host_data and debug.
func TestAdmitSNP(t *testing.T) {
	vcekTime, vlekTime := time.Unix(1704067200, 0), time.Unix(1750000000, 0)
	// go-sev-guest's report: UpToDate at bootloader 2, tee 0, snp 5, microcode 68; firmware
	// 1.49.3; debug allowed by its guest policy.
	google := snpClaims(t, "go-sev-guest/testdata/attestation.bin", "go-sev-guest/testdata/vcek.testcer", vcekTime)
	// trustee's: ConfigurationNeeded (microcode 206 runs, 115 is reported and committed).
	trustee := snpClaims(t, "trustee/test-report.bin", "trustee/test-vcek.der", vcekTime)
	// trustee's VLEK report: ConfigurationNeeded, VMPL 1, launched at microcode 219, reported 217.
	vlek := snpClaims(t, "trustee/test-vlek-report.bin", "trustee/test-vlek.der", vlekTime)
	zero := strings.Repeat("00", 32)
	for _, tc := range []struct {
		name     string
		claims   *attest.Claims
		settings string
		want     string // "" admits
	}{
		{"up to date", google, "allow_debug = true\nmin_tcb = {bootloader = 2, snp = 5, microcode = 68}\n", ""},
		{"debug", google, "", "debug enclaves are not allowed"},
		{"reported TCB below min_tcb", google, "allow_debug = true\nmin_tcb = {bootloader = 2, snp = 6, microcode = 69}\n",
			`TCB status OutOfDate is not accepted (accept_tcb = ["UpToDate"]): REPORTED_TCB snp 5 < min_tcb 6, REPORTED_TCB microcode 68 < min_tcb 69, LAUNCH_TCB snp 5 < min_tcb 6, LAUNCH_TCB microcode 68 < min_tcb 69`},
		{"below min_tcb, OutOfDate accepted", google, "allow_debug = true\nmin_tcb = {microcode = 69}\naccept_tcb = [\"UpToDate\", \"OutOfDate\"]\n", ""},
		{"fmc applies to Turin only", google, "allow_debug = true\nmin_tcb = {fmc = 9}\n", ""},
		{"configuration needed", trustee, "", "TCB status ConfigurationNeeded is not accepted (accept_tcb = [\"UpToDate\"]): REPORTED_TCB (bootloader 3, tee 0, snp 8, microcode 115) is below CURRENT_TCB"},
		{"configuration needed, accepted", trustee, "accept_tcb = [\"ConfigurationNeeded\"]\nmin_tcb = {bootloader = 3, snp = 8, microcode = 115}\n", ""},
		// The current microcode is 206, but the report's key vouches for 115 only.
		{"current TCB does not count", trustee, "accept_tcb = [\"ConfigurationNeeded\"]\nmin_tcb = {microcode = 200}\n",
			"TCB status OutOfDateConfigurationNeeded is not accepted (accept_tcb = [\"ConfigurationNeeded\"]): REPORTED_TCB microcode 115 < min_tcb 200, LAUNCH_TCB microcode 115 < min_tcb 200; REPORTED_TCB"},
		{"min_firmware", trustee, "accept_tcb = [\"ConfigurationNeeded\"]\nmin_firmware = \"1.52.4\"\n", ""},
		{"firmware below min_firmware", trustee, "accept_tcb = [\"ConfigurationNeeded\"]\nmin_firmware = \"1.52.5\"\n", "committed firmware 1.52.4 is below min_firmware 1.52.5"},
		{"older minor version", trustee, "accept_tcb = [\"ConfigurationNeeded\"]\nmin_firmware = \"1.53.0\"\n", "below min_firmware 1.53.0"},
		{"host_data", trustee, "accept_tcb = [\"ConfigurationNeeded\"]\nhost_data = [\"" + strings.Repeat("ab", 32) + "\", \"" + zero + "\"]\n", ""},
		{"other host_data", trustee, "accept_tcb = [\"ConfigurationNeeded\"]\nhost_data = [\"" + strings.Repeat("ab", 32) + "\"]\n", "host_data " + zero + " is not one allowed"},
		{"VMPL 1 by default", vlek, "accept_tcb = [\"ConfigurationNeeded\"]\n", "VMPL 1 is not 0 (vmpl)"},
		{"VMPL 1 allowed", vlek, "accept_tcb = [\"ConfigurationNeeded\"]\nvmpl = 1\n", ""},
		// Reported 217 is below 218, launch 219 is not.
		{"launch TCB above, reported below", vlek, "accept_tcb = [\"ConfigurationNeeded\"]\nvmpl = 1\nmin_tcb = {microcode = 218}\n",
			"TCB status OutOfDateConfigurationNeeded is not accepted (accept_tcb = [\"ConfigurationNeeded\"]): REPORTED_TCB microcode 217 < min_tcb 218; "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := snpWorkload(t, tc.claims.Measurement.String(), tc.settings).Admit(tc.claims)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == "" && w.Name != "cvm":
				t.Fatalf("admitted by %q", w.Name)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// Claims without the report's fields (from another verifier) are refused.
	bare := *google
	bare.SNP = nil
	if _, err := snpWorkload(t, google.Measurement.String(), "allow_debug = true\n").Admit(&bare); err == nil || !strings.Contains(err.Error(), "no SEV-SNP report fields") {
		t.Errorf("claims without SNP fields: %v", err)
	}
}

func TestSNPConfigErrors(t *testing.T) {
	m := "measurement = [\"" + strings.Repeat("11", 48) + "\"]\nmin_tcb = {}\n"
	for _, tc := range []struct{ workload, want string }{
		{"tee = \"snp\"\nmeasurement = [\"" + strings.Repeat("11", 48) + "\"]\n", `tee = "snp" needs min_tcb, the oldest TCB the workload considers up to date, as min_tcb = {bootloader = 10`},
		{"tee = \"sgx\"\nmrenclave = [\"" + mrenclave + "\"]\nmin_tcb = {microcode = 1}\n", `min_tcb, min_firmware, vmpl and host_data are for tee = "snp"`},
		{"tee = \"tdx\"\nmrtd = [\"" + strings.Repeat("11", 48) + "\"]\nvmpl = 0\n", `are for tee = "snp"`},
		{"tee = \"snp\"\nmeasurement = [\"" + strings.Repeat("11", 48) + "\"]\nmin_tcb = {microcod = 1}\n", "unknown keys: workload.min_tcb.microcod"},
		{"tee = \"snp\"\nmeasurement = [\"" + strings.Repeat("11", 48) + "\"]\nmin_tcb = {microcode = 256}\n", "microcode"},
		{"tee = \"snp\"\n" + m + "min_firmware = \"1.55\"\n", `min_firmware "1.55" is not MAJOR.MINOR.BUILD (as 1.55.29)`},
		{"tee = \"snp\"\n" + m + "min_firmware = \"1.55.29 \"\n", `min_firmware "1.55.29 " is not`},
		{"tee = \"snp\"\n" + m + "vmpl = 4\n", "vmpl 4 is not one of 0 to 3"},
		{"tee = \"snp\"\n" + m + "host_data = [\"abcd\"]\n", `host_data "abcd" is not 32 bytes in hex`},
	} {
		_, err := LoadConfig(writeConfig(t, "[[workload]]\nname = \"w\"\nkeys = [\"k\"]\n"+tc.workload))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("workload %q: error %v, want %q", tc.workload, err, tc.want)
		}
	}
}
