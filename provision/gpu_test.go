package provision

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sim"
	simgpu "github.com/ppml/ppml/attest/sim/gpu"
	"github.com/ppml/ppml/provision/wire"
	"github.com/ppml/ppml/store"
)

// gpuBed is a testbed whose server trusts three simulated platforms with GPUs: "sim" (two
// GPUs in CC mode, the current driver), "devtools" (two GPUs in devtools mode) and "old" (two
// GPUs on an old driver).
type gpuBed struct {
	*testbed
	gpus, devtools, old *simgpu.GPUs
}

func newGPUBed(t *testing.T) *gpuBed {
	t.Helper()
	tb := newTestbed(t, byEnclave)
	now := time.Now()
	b := &gpuBed{testbed: tb}
	var err error
	if b.gpus, err = simgpu.Init(tb.plat.Dir, simgpu.Settings{Count: 2}, now); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		name string
		s    simgpu.Settings
		g    **simgpu.GPUs
	}{
		{"devtools", simgpu.Settings{Count: 2, Mode: simgpu.ModeDevtools}, &b.devtools},
		{"old", simgpu.Settings{Count: 2, DriverVersion: "535.104.05"}, &b.old},
	} {
		dir := filepath.Join(tb.dir, p.name)
		if _, err := sim.Init(dir, "", now); err != nil {
			t.Fatal(err)
		}
		if *p.g, err = simgpu.Init(dir, p.s, now); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// policy reloads the server with one workload, the test enclave's, whose [workload.gpus] is
// gpus; %[1]s in it stands for the folder of the platform "sim".
func (b *gpuBed) policy(t *testing.T, gpus string) {
	t.Helper()
	config := fmt.Sprintf(`tls_cert = "server.crt"
tls_key = "server.key"
store = "sqlite:ppml.db"
master_key_file = "master.key"
sim_platforms = ["sim", "devtools", "old"]

[[workload]]
name = "training"
tee = "sgx"
mrenclave = ["%x"]
allow_simulated = true
keys = ["model"]

[workload.gpus]
`, b.enclave.MREnclave) + gpus
	path := filepath.Join(b.dir, "server.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.server.Reload(cfg); err != nil {
		t.Fatal(err)
	}
}

// fetch asks for the model key with the test enclave on the platform "sim" and the GPUs g
// (nil: none), and returns the error and the audit record.
func (b *gpuBed) fetch(t *testing.T, g attest.GPUAttester) (error, store.AuditRecord) {
	t.Helper()
	var a attest.Attester = sim.Attester{Platform: b.plat, Enclave: b.enclave}
	if g != nil {
		a = attest.WithGPUs{Attester: a, GPUs: g}
	}
	seen := len(b.audit(t))
	_, err := b.client(a).Fetch(context.Background(), "model")
	return err, b.lastAudit(t, seen)
}

const gpuPolicy = `count = 2
arch = "Hopper"
min_driver = "550.90"
rims = "sim/gpu/rims"
`

// Composite key release end to end, through real TLS: the CPU's evidence and the GPUs' in one
// RA-TLS certificate, each GPU's nonce the key binding.
func TestGPUKeyReleased(t *testing.T) {
	b := newGPUBed(t)
	b.policy(t, gpuPolicy)
	err, rec := b.fetch(t, b.gpus)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Decision != store.Allow || len(rec.GPUs) != 2 {
		t.Fatalf("audit record %+v", rec)
	}
	for i, g := range rec.GPUs {
		want := store.GPURecord{Platform: "simulated", Arch: "Hopper", DriverVersion: simgpu.DefaultDriver, VBIOSVersion: simgpu.DefaultVBIOS,
			FWID: b.gpus.Settings.FirmwareIDs[i].String(), Measurements: "match", Revocation: "unchecked"}
		if fmt.Sprint(g) != fmt.Sprint(want) {
			t.Errorf("GPU %d: record %+v, want %+v", i, g, want)
		}
	}
}

// wrongNonce answers another nonce than the one it is given: evidence not bound to the key.
type wrongNonce struct{ *simgpu.GPUs }

func (w wrongNonce) AttestGPUs(nonce [32]byte) ([]attest.GPUEvidence, error) {
	nonce[0] ^= 1
	return w.GPUs.AttestGPUs(nonce)
}

// unbound GPUs: the evidence of the first GPU is another certificate's.
type mixed struct {
	*simgpu.GPUs
	other []attest.GPUEvidence
}

func (m mixed) AttestGPUs(nonce [32]byte) ([]attest.GPUEvidence, error) {
	gpus, err := m.GPUs.AttestGPUs(nonce)
	if err != nil {
		return nil, err
	}
	return append(m.other, gpus[1:]...), nil
}

// Each refusal of a GPU is on record with its reason, and the client is refused.
func TestGPUKeyRefused(t *testing.T) {
	b := newGPUBed(t)
	replayed, err := b.gpus.AttestGPUs([32]byte{0x42})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, policy string
		gpus         attest.GPUAttester
		reason       string
	}{
		{"no GPU", gpuPolicy, nil, "0 GPUs attested, 2 required (gpus.count)"},
		{"a GPU missing", strings.Replace(gpuPolicy, "count = 2", "count = 3", 1), b.gpus, "2 GPUs attested, 3 required (gpus.count)"},
		{"nonce not bound", gpuPolicy, wrongNonce{b.gpus}, "GPU 0: GPU nonce: mismatch"},
		{"replayed evidence", gpuPolicy, mixed{b.gpus, replayed[:1]}, "GPU 0: GPU nonce: mismatch"},
		{"devtools", strings.Replace(gpuPolicy, "sim/gpu/rims", "devtools/gpu/rims", 1), b.devtools, "GPU 0: GPU measurements: mismatch: RIM indices [5] differ"},
		{"old driver", strings.Replace(gpuPolicy, "sim/gpu/rims", "old/gpu/rims", 1), b.old, "GPU 0: driver 535.104.05 is older than 550.90 (gpus.min_driver)"},
		{"a GPU given twice", strings.Replace(gpuPolicy, "count = 2", "count = 4", 1), twoOf{b.gpus}, "GPU 2: the same GPU as GPU 0 (its device key)"},
		{"architecture", strings.Replace(gpuPolicy, "Hopper", "Blackwell", 1), b.gpus, `GPU 0: architecture "Hopper" is not Blackwell (gpus.arch)`},
		{"RIMs under another root", strings.Replace(gpuPolicy, "sim/gpu/rims", "devtools/gpu/rims", 1), b.gpus, `GPU 0: GPU RIM: RIM 1: RIM signer "ppml simulated NVIDIA RIM signer": certificate chain does not lead to a trusted root`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.policy(t, tc.policy)
			err, rec := b.fetch(t, tc.gpus)
			if !errors.Is(err, wire.ErrRefused) {
				t.Fatalf("fetch: %v, want a refusal", err)
			}
			if rec.Decision != store.Deny || !strings.Contains(rec.Reason, tc.reason) {
				t.Errorf("audit record: %s %q, want the reason %q", rec.Decision, rec.Reason, tc.reason)
			}
			if tc.gpus != nil && (len(rec.GPUs) == 0 && !strings.Contains(tc.reason, "gpus.count")) {
				t.Errorf("no GPU records: %+v", rec)
			}
		})
	}
}

// twoOf presents a platform's GPUs twice, as twice as many GPUs.
type twoOf struct{ *simgpu.GPUs }

func (d twoOf) AttestGPUs(nonce [32]byte) ([]attest.GPUEvidence, error) {
	g, err := d.GPUs.AttestGPUs(nonce)
	return append(g, g...), err
}

func TestGPUPolicyChecked(t *testing.T) {
	dir := t.TempDir()
	if _, err := simgpu.Init(dir, simgpu.Settings{Count: 1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ policy, err string }{
		{`count = 0` + "\nrims = \"gpu/rims\"", "gpus.count 0"},
		{`count = 1`, "gpus.rims is required"},
		{`count = 1` + "\nrims = \"nowhere\"", "gpus.rims: open"},
		{`count = 1` + "\nrims = \"gpu\"", "gpus.rims: " + filepath.Join(dir, "gpu")},
		{`count = 1` + "\narch = \"Ampere\"\nrims = \"gpu/rims\"", `gpus.arch "Ampere"`},
		{`count = 1` + "\nmin_driver = \"r550\"\nrims = \"gpu/rims\"", `gpus.min_driver: driver version "r550"`},
	} {
		g := &GPUPolicy{}
		path := filepath.Join(dir, "p.toml")
		os.WriteFile(path, []byte(tc.policy), 0o600)
		if _, err := toml.DecodeFile(path, g); err != nil {
			t.Fatal(err)
		}
		if err := g.check(dir); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: %v, want %q", tc.policy, err, tc.err)
		}
	}
}

func TestVersionBelow(t *testing.T) {
	for _, tc := range []struct {
		a, b  string
		below bool
	}{
		{"535.104.05", "550.90", true}, {"550.90.07", "550.90", false}, {"550.90", "550.90.07", true},
		{"550.90.07", "550.90.07", false}, {"560.1", "550.90.07", false}, {"550.100", "550.90", false},
	} {
		a, _ := parseVersion(tc.a)
		b, _ := parseVersion(tc.b)
		if versionBelow(a, b) != tc.below {
			t.Errorf("%s below %s: %t", tc.a, tc.b, !tc.below)
		}
	}
}
