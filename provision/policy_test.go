package provision

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
)

const (
	mrenclave = "1111111111111111111111111111111111111111111111111111111111111111"
	mrsigner  = "2222222222222222222222222222222222222222222222222222222222222222"
)

func writeConfig(t *testing.T, workloads string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "server.toml")
	body := `listen = "127.0.0.1:4433"
tls_cert = "server.crt"
tls_key = "server.key"
store = "sqlite:ppml.db"
master_key_file = "master.key"
sim_platforms = ["sim"]
` + workloads
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfig(t *testing.T) {
	path := writeConfig(t, `collateral = "collateral"
tdx_collateral = "https://pccs.example:8081"

[[workload]]
name = "pytorch"
tee = "sgx"
mrenclave = ["`+mrenclave+`"]
mrsigner = "`+mrsigner+`"
isv_prod_id = 0
min_isv_svn = 0
allow_debug = false
accept_tcb = ["UpToDate"]
min_tcb_date = "2024-03-13"
min_tcb_evaluation_data_number = 17
deny_advisories = ["INTEL-SA-00837"]
keys = ["default"]

[[workload]]
name = "td"
tee = "tdx"
mrtd = ["`+strings.Repeat("33", 48)+`"]
allow_sept_ve = true
mr_service_td = ["`+strings.Repeat("44", 48)+`"]
allow_advisories = ["INTEL-SA-01036"]
keys = ["default"]
`)
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(path)
	if c.TLSCert != filepath.Join(dir, "server.crt") || c.Store != "sqlite:"+filepath.Join(dir, "ppml.db") || c.SimPlatforms[0] != filepath.Join(dir, "sim") {
		t.Errorf("paths not resolved against the file's folder: %+v", c)
	}
	if c.Collateral != filepath.Join(dir, "collateral") || c.TDXCollateral != "https://pccs.example:8081" {
		t.Errorf("collateral %q, tdx_collateral %q: want a folder resolved, a URL as it is", c.Collateral, c.TDXCollateral)
	}
	if c.HandshakeTimeout.Duration != 10*time.Second || c.MaxConnections != 256 || c.MaxConnectionsPerPeer != 32 || c.FirstByteTimeout.Duration != 2*time.Second {
		t.Errorf("defaults not set: %+v", c)
	}
	if len(c.Workloads) != 2 || c.Workloads[0].Keys[0] != "default" || c.Workloads[0].MinTCBEvaluationDataNumber != 17 ||
		c.Workloads[0].minTCBDate.IsZero() || c.Workloads[0].DenyAdvisories[0] != "INTEL-SA-00837" ||
		!c.Workloads[1].AllowSEPTVE || len(c.Workloads[1].MRServiceTD) != 1 || c.Workloads[1].AllowAdvisories[0] != "INTEL-SA-01036" {
		t.Errorf("workloads %+v", c.Workloads)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ workloads, want string }{
		{``, "no [[workload]]"},
		{"[[workload]]\nname = \"w\"\ntee = \"sgx\"\nkeys = [\"k\"]\n", "no measurement: it would admit any sgx workload"},
		{"[[workload]]\nname = \"w\"\ntee = \"sgx\"\nmrsigner = \"" + mrsigner + "\"\nkeys = [\"k\"]\n", "mrsigner without isv_prod_id"},
		{"[[workload]]\nname = \"w\"\ntee = \"sgx\"\nmrenclave = [\"abcd\"]\nkeys = [\"k\"]\n", `mrenclave "abcd" is not 32 bytes in hex`},
		{"[[workload]]\nname = \"w\"\ntee = \"sgx\"\nmrenclave = [\"" + mrenclave + "\"]\n", "no keys to release"},
		{"[[workload]]\nname = \"w\"\ntee = \"sev\"\nkeys = [\"k\"]\n", `tee "sev" is not sgx, tdx or snp`},
		{"[[workload]]\nname = \"w\"\ntee = \"sgx\"\nmrenclave = [\"" + mrenclave + "\"]\nkeys = [\"_sgx_mrenclave\"]\n", `key "_sgx_mrenclave"`},
		{"max_connections = -1\n[[workload]]\nname = \"w\"\ntee = \"sgx\"\nmrenclave = [\"" + mrenclave + "\"]\nkeys = [\"k\"]\n", "must be positive"},
		{"max_connections_per_peer = -1\n[[workload]]\nname = \"w\"\ntee = \"sgx\"\nmrenclave = [\"" + mrenclave + "\"]\nkeys = [\"k\"]\n", "max_connections_per_peer must be positive"},
		{"first_byte_timeout = \"-1s\"\n[[workload]]\nname = \"w\"\ntee = \"sgx\"\nmrenclave = [\"" + mrenclave + "\"]\nkeys = [\"k\"]\n", "first_byte_timeout must be positive"},
		{"[[workload]]\nname = \"w\"\ntee = \"sgx\"\nmrenclave = [\"" + mrenclave + "\"]\naccept_tcb = [\"Fine\"]\nkeys = [\"k\"]\n", `accept_tcb "Fine"`},
		{"[[workload]]\nname = \"w\"\ntee = \"sgx\"\nmrenclave = [\"" + mrenclave + "\"]\nkeys = [\"k\"]\nallow_debg = true\n", "unknown keys: workload.allow_debg"},
		{"[[workload]]\nname = \"w\"\ntee = \"snp\"\nmeasurement = [\"" + strings.Repeat("ab", 48) + "\"]\nmin_tcb = {}\ndeny_advisories = [\"AMD-SB-3019\"]\nkeys = [\"k\"]\n", `deny_advisories and allow_advisories name Intel's advisories`},
		{"[[workload]]\nname = \"w\"\ntee = \"snp\"\nmeasurement = [\"" + strings.Repeat("ab", 48) + "\"]\nmin_tcb = {}\nallow_advisories = [\"INTEL-SA-00837\"]\nkeys = [\"k\"]\n", `deny_advisories and allow_advisories name Intel's advisories`},
		{"[[workload]]\nname = \"w\"\ntee = \"sgx\"\nmrenclave = [\"" + mrenclave + "\"]\nkeys = [\"k\"]\n[[workload]]\nname = \"w\"\ntee = \"sgx\"\nmrenclave = [\"" + mrenclave + "\"]\nkeys = [\"k\"]\n", `two workloads are named "w"`},
	} {
		_, err := LoadConfig(writeConfig(t, tc.workloads))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: error %v, want %q", tc.workloads, err, tc.want)
		}
	}
}

func u16(v uint16) *uint16 { return &v }

func sgxClaims() *attest.Claims {
	return &attest.Claims{
		TEE: attest.SGX, Platform: "simulated",
		MREnclave: unhex(mrenclave), MRSigner: unhex(mrsigner), ISVProdID: u16(3), ISVSVN: u16(5),
		TCBStatus: "UpToDate",
	}
}

func unhex(s string) attest.Hex {
	var h attest.Hex
	h.UnmarshalText([]byte(s))
	return h
}

// checkAdmit checks that w admits c if want is "", else that it refuses c saying want.
func checkAdmit(t *testing.T, name string, w Workload, c *attest.Claims, want string) {
	t.Helper()
	got, err := Policy{w}.Admit(c)
	switch {
	case want == "" && (err != nil || got.Name != w.Name):
		t.Errorf("%s: refused: %v", name, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("%s: err = %v, want %q", name, err, want)
	}
}

func TestAdmit(t *testing.T) {
	byEnclave := Workload{Name: "byenclave", TEE: "sgx", MREnclave: []string{mrenclave}, AllowSimulated: true, Keys: []string{"k"}}
	bySigner := Workload{Name: "bysigner", TEE: "sgx", MRSigner: mrsigner, ISVProdID: u16(3), MinISVSVN: u16(5), AllowSimulated: true, Keys: []string{"k"}}
	for _, w := range []*Workload{&byEnclave, &bySigner} {
		if err := w.check(""); err != nil {
			t.Fatal(err)
		}
	}
	production := byEnclave
	production.AllowSimulated = false
	for _, tc := range []struct {
		name   string
		w      Workload
		change func(*attest.Claims)
		want   string // "" admits
	}{
		{"enclave", byEnclave, func(*attest.Claims) {}, ""},
		{"signer", bySigner, func(*attest.Claims) {}, ""},
		{"higher svn", bySigner, func(c *attest.Claims) { c.ISVSVN = u16(9) }, ""},
		{"wrong mrenclave", byEnclave, func(c *attest.Claims) { c.MREnclave = unhex(mrsigner) }, "mrenclave 2222"},
		{"wrong mrsigner", bySigner, func(c *attest.Claims) { c.MRSigner = unhex(mrenclave) }, "mrsigner 1111"},
		{"wrong product", bySigner, func(c *attest.Claims) { c.ISVProdID = u16(4) }, "isv_prod_id 4 is not 3"},
		{"lower svn", bySigner, func(c *attest.Claims) { c.ISVSVN = u16(4) }, "isv_svn 4 is below 5"},
		{"debug", byEnclave, func(c *attest.Claims) { c.Debug = true }, "debug enclaves are not allowed"},
		{"outdated", byEnclave, func(c *attest.Claims) { c.TCBStatus = "OutOfDate" }, "TCB status OutOfDate is not accepted"},
		{"other tee", byEnclave, func(c *attest.Claims) { c.TEE = attest.TDX }, "the evidence is tdx"},
		{"simulated", production, func(*attest.Claims) {}, "evidence from a simulated platform is not allowed"},
		{"genuine", production, func(c *attest.Claims) { c.Platform = "intel" }, ""},
	} {
		c := sgxClaims()
		tc.change(c)
		checkAdmit(t, tc.name, tc.w, c, tc.want)
	}
	debugOK := byEnclave
	debugOK.AllowDebug, debugOK.AcceptTCB = true, []string{"UpToDate", "OutOfDate"}
	c := sgxClaims()
	c.Debug, c.TCBStatus = true, "OutOfDate"
	if _, err := (Policy{debugOK}).Admit(c); err != nil {
		t.Errorf("allow_debug and accept_tcb: %v", err)
	}
	if _, err := (Policy{}).Admit(c); err == nil {
		t.Error("an empty policy admitted")
	}
}

// TestAdmitCVM checks the constraints of a TD's and an SEV-SNP guest's policy: the image's
// measurement, the workload's measurement in the report data, MRCONFIGID and HOSTDATA. A
// different manifest in the same image (same MRTD, same launch measurement) is refused.
func TestAdmitCVM(t *testing.T) {
	mrtd, measurement := strings.Repeat("33", 48), strings.Repeat("44", 48)
	manifestA, manifestB := strings.Repeat("aa", 32), strings.Repeat("bb", 32)
	reportData := func(m string) attest.Hex { return append(make(attest.Hex, 32), unhex(m)...) }
	td := Workload{Name: "td", TEE: "tdx", MRTD: []string{mrtd}, Manifest: []string{manifestA},
		MRConfigID: []string{manifestA + strings.Repeat("00", 16)}, Keys: []string{"k"}}
	guest := Workload{Name: "guest", TEE: "snp", Measurement: []string{measurement}, Manifest: []string{manifestA},
		SNPWorkload: SNPWorkload{HostData: []string{manifestA}, MinTCB: &SNPMinTCB{}}, Keys: []string{"k"}}
	for _, w := range []*Workload{&td, &guest} {
		if err := w.check(""); err != nil {
			t.Fatal(err)
		}
	}
	tdClaims := func() *attest.Claims {
		return &attest.Claims{TEE: attest.TDX, Platform: "intel", MRTD: unhex(mrtd), TCBStatus: "UpToDate",
			TD:         &attest.TD{MRConfigID: unhex(manifestA + strings.Repeat("00", 16)), Attributes: attest.TDAttributes{SEPTVEDisable: true}},
			ReportData: reportData(manifestA)}
	}
	snpClaims := func() *attest.Claims {
		return &attest.Claims{TEE: attest.SNP, Platform: "amd", Measurement: unhex(measurement), TCBStatus: "UpToDate",
			SNP: &attest.SNPClaims{HostData: unhex(manifestA)}, ReportData: reportData(manifestA)}
	}
	for _, tc := range []struct {
		name   string
		w      Workload
		claims func() *attest.Claims
		change func(*attest.Claims)
		want   string // "" admits
	}{
		{"td", td, tdClaims, func(*attest.Claims) {}, ""},
		{"td, other manifest", td, tdClaims, func(c *attest.Claims) { c.ReportData = reportData(manifestB) }, "manifest " + manifestB + " is not the one allowed"},
		{"td, no manifest", td, tdClaims, func(c *attest.Claims) { c.ReportData = make(attest.Hex, 64) }, "the evidence carries no manifest"},
		{"td, other mrconfigid", td, tdClaims, func(c *attest.Claims) { c.TD.MRConfigID = unhex(manifestB + strings.Repeat("00", 16)) }, "mr_config_id " + manifestB},
		{"td, no mrconfigid", td, tdClaims, func(c *attest.Claims) { c.TD = nil }, "the evidence carries no mr_config_id"},
		{"guest", guest, snpClaims, func(*attest.Claims) {}, ""},
		{"guest, other manifest", guest, snpClaims, func(c *attest.Claims) { c.ReportData = reportData(manifestB) }, "manifest " + manifestB},
		{"guest, other hostdata", guest, snpClaims, func(c *attest.Claims) { c.SNP.HostData = unhex(manifestB) }, "host_data " + manifestB},
	} {
		c := tc.claims()
		tc.change(c)
		checkAdmit(t, tc.name, tc.w, c, tc.want)
	}
	for _, tc := range []struct{ workload, want string }{
		{"tee = \"sgx\"\nmrenclave = [\"" + mrenclave + "\"]\nmr_config_id = [\"" + mrtd + "\"]", `allow_sept_ve, mr_service_td and mr_config_id are for tee = "tdx"`},
		{"tee = \"tdx\"\nmrtd = [\"" + mrtd + "\"]\nmr_config_id = [\"abcd\"]", `mr_config_id "abcd" is not 48 bytes in hex`},
		{"tee = \"tdx\"\nmrtd = [\"" + mrtd + "\"]\nmanifest = [\"abcd\"]", `manifest "abcd" is not 32 bytes in hex`},
	} {
		_, err := LoadConfig(writeConfig(t, "[[workload]]\nname = \"w\"\nkeys = [\"k\"]\n"+tc.workload+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.workload, err, tc.want)
		}
	}
}

// TestConfigRequiredInOrder checks that with several required fields missing, the error names
// the first of them, always the same one.
func TestConfigRequiredInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.toml")
	// tls_cert is given; tls_key, store and master_key_file are not.
	if err := os.WriteFile(path, []byte("tls_cert = \"server.crt\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || err.Error() != path+": tls_key is required" {
		t.Errorf("error %v, want %q", err, path+": tls_key is required")
	}
}

func tdxClaims() *attest.Claims {
	date := time.Date(2024, 3, 13, 0, 0, 0, 0, time.UTC)
	return &attest.Claims{
		TEE: attest.TDX, Platform: "intel", MRTD: unhex(strings.Repeat("33", 48)), TCBStatus: "UpToDate",
		TCBDate: &date, TCBEvaluationDataNumber: 17, AdvisoryIDs: []string{"INTEL-SA-01036"},
		TD: &attest.TD{Attributes: attest.TDAttributes{SEPTVEDisable: true}, MRServiceTD: make(attest.Hex, 48)},
	}
}

// TestTCBPolicy checks min_tcb_date, min_tcb_evaluation_data_number, deny_advisories and
// allow_advisories, and TD hardening: each refuses what it should, and the defaults admit
// only a hardened TD.
func TestTCBPolicy(t *testing.T) {
	base := Workload{Name: "td", TEE: "tdx", MRTD: []string{strings.Repeat("33", 48)}, Keys: []string{"k"}}
	other := strings.Repeat("44", 48)
	for _, tc := range []struct {
		name   string
		policy func(*Workload)
		change func(*attest.Claims)
		want   string // "" admits
	}{
		{"defaults", func(*Workload) {}, func(*attest.Claims) {}, ""},
		{"min date met", func(w *Workload) { w.MinTCBDate = "2024-03-13" }, func(*attest.Claims) {}, ""},
		{"min date", func(w *Workload) { w.MinTCBDate = "2024-03-14" }, func(*attest.Claims) {}, "TCB date 2024-03-13 is before 2024-03-14 (min_tcb_date)"},
		{"min date RFC 3339", func(w *Workload) { w.MinTCBDate = "2024-03-13T00:00:01Z" }, func(*attest.Claims) {}, "before"},
		{"no date", func(w *Workload) { w.MinTCBDate = "2024-01-01" }, func(c *attest.Claims) { c.TCBDate = nil }, "has no TCB date"},
		{"evaluation data", func(w *Workload) { w.MinTCBEvaluationDataNumber = 18 }, func(*attest.Claims) {}, "TCB evaluation data number 17 is below 18"},
		{"evaluation data met", func(w *Workload) { w.MinTCBEvaluationDataNumber = 17 }, func(*attest.Claims) {}, ""},
		{"denied advisory", func(w *Workload) { w.DenyAdvisories = []string{"intel-sa-01036"} }, func(*attest.Claims) {}, "advisory INTEL-SA-01036 applies (deny_advisories)"},
		{"other denied", func(w *Workload) { w.DenyAdvisories = []string{"INTEL-SA-00001"} }, func(*attest.Claims) {}, ""},
		{"not allowed advisory", func(w *Workload) { w.AllowAdvisories = []string{"INTEL-SA-00001"} }, func(*attest.Claims) {}, "not in allow_advisories"},
		{"allowed advisory", func(w *Workload) { w.AllowAdvisories = []string{"INTEL-SA-01036"} }, func(*attest.Claims) {}, ""},
		{"relaunch advised", func(*Workload) {}, func(c *attest.Claims) { c.TCBStatus = "TDRelaunchAdvised" }, "TCB status TDRelaunchAdvised is not accepted"},
		{"relaunch accepted", func(w *Workload) { w.AcceptTCB = []string{"TDRelaunchAdvised"} }, func(c *attest.Claims) { c.TCBStatus = "TDRelaunchAdvised" }, ""},
		{"debug TD", func(*Workload) {}, func(c *attest.Claims) { c.Debug = true }, "debug TDs are not allowed (allow_debug = false)"},
		{"SEPT #VE", func(*Workload) {}, func(c *attest.Claims) { c.TD.Attributes.SEPTVEDisable = false }, "does not set SEPT_VE_DISABLE (allow_sept_ve = false)"},
		{"SEPT #VE allowed", func(w *Workload) { w.AllowSEPTVE = true }, func(c *attest.Claims) { c.TD.Attributes.SEPTVEDisable = false }, ""},
		{"service TD", func(*Workload) {}, func(c *attest.Claims) { c.TD.MRServiceTD = unhex(other) }, "mr_service_td 4444"},
		{"service TD allowed", func(w *Workload) { w.MRServiceTD = []string{other} }, func(c *attest.Claims) { c.TD.MRServiceTD = unhex(other) }, ""},
		{"TD 1.0", func(*Workload) {}, func(c *attest.Claims) { c.TD.MRServiceTD = nil }, ""},
		{"no TD", func(*Workload) {}, func(c *attest.Claims) { c.TD = nil }, "does not describe the TD"},
	} {
		w := base
		tc.policy(&w)
		if err := w.check(""); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		c := tdxClaims()
		tc.change(c)
		_, err := Policy{w}.Admit(c)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	for _, tc := range []struct {
		w    Workload
		want string
	}{
		{Workload{TCBPolicy: TCBPolicy{MinTCBDate: "March 2024"}}, `min_tcb_date "March 2024" is neither a date`},
		{Workload{TDHardening: TDHardening{MRServiceTD: []string{"00"}}}, "mr_service_td \"00\" is not 48 bytes in hex"},
	} {
		w := base
		w.TCBPolicy, w.TDHardening = tc.w.TCBPolicy, tc.w.TDHardening
		if err := w.check(""); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("check: %v, want %q", err, tc.want)
		}
	}
	sgxW := Workload{Name: "e", TEE: "sgx", MREnclave: []string{mrenclave}, Keys: []string{"k"}, TDHardening: TDHardening{AllowSEPTVE: true}}
	if err := sgxW.check(""); err == nil || !strings.Contains(err.Error(), `are for tee = "tdx"`) {
		t.Errorf("allow_sept_ve on an SGX workload: %v", err)
	}
}

// TestStoreFromEnv: store = "env:NAME" takes the store's data source name from $NAME, so that a
// password in it stays out of the file; an unset variable is an error that names it.
func TestStoreFromEnv(t *testing.T) {
	const workload = "[[workload]]\nname = \"w\"\ntee = \"sgx\"\nmrenclave = [\"" + mrenclave + "\"]\nkeys = [\"k\"]\n"
	path := writeConfig(t, workload)
	b, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(b), `store = "sqlite:ppml.db"`, `store = "env:PPML_TEST_STORE"`, 1)), 0o600)
	t.Setenv("PPML_TEST_STORE", "sqlite:keys.db")
	c, err := LoadConfig(path)
	if err != nil || c.Store != "sqlite:"+filepath.Join(filepath.Dir(path), "keys.db") {
		t.Fatalf("store from the environment: %v, %+v", err, c)
	}
	t.Setenv("PPML_TEST_STORE", "")
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), `store = "env:PPML_TEST_STORE": the environment variable PPML_TEST_STORE is not set or empty`) {
		t.Fatalf("unset variable: %v", err)
	}
}
