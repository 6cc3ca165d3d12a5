package provision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sim"
	"github.com/ppml/ppml/provision/client"
	"github.com/ppml/ppml/provision/wire"
	"github.com/ppml/ppml/store"
)

// testbed is a server on loopback with a simulated platform, keys and a policy.
type testbed struct {
	dir     string
	addr    string
	roots   *x509.CertPool
	store   store.Store
	server  *Server
	plat    *sim.Platform
	enclave sim.Enclave
	keys    map[string][]byte
}

var testEnclave = sim.Enclave{
	MREnclave: sha256.Sum256([]byte("pytorch workload")),
	MRSigner:  sha256.Sum256([]byte("owner")),
	ISVProdID: 1, ISVSVN: 2,
}

// newServerDir makes a server's folder: a CA, certificate and master key (Setup), a simulated
// platform, and a configuration whose store is storeDSN and whose policy is the TOML workloads
// given; %[1]x and %[2]x in it stand for the test enclave's MRENCLAVE and MRSIGNER.
func newServerDir(t *testing.T, storeDSN, workloads string) (*Config, *sim.Platform) {
	t.Helper()
	dir := t.TempDir()
	if err := Setup(dir, []string{"localhost", "127.0.0.1"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	plat, err := sim.Init(filepath.Join(dir, "sim"), "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`tls_cert = "server.crt"
tls_key = "server.key"
store = %[3]q
master_key_file = "master.key"
sim_platforms = ["sim"]
`+workloads, testEnclave.MREnclave, testEnclave.MRSigner, storeDSN)
	path := filepath.Join(dir, "server.toml")
	os.WriteFile(path, []byte(config), 0o600)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, plat
}

// openStore opens the store of cfg.
func openStore(t *testing.T, cfg *Config) store.Store {
	t.Helper()
	mk, err := store.ReadMasterKey(cfg.MasterKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(cfg.Store, mk)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// newTestbed starts a server whose policy is the TOML workloads given, as newServerDir takes
// them.
func newTestbed(t *testing.T, workloads string) *testbed {
	t.Helper()
	cfg, plat := newServerDir(t, "sqlite:ppml.db", workloads)
	dir := filepath.Dir(cfg.TLSCert)
	st := openStore(t, cfg)
	tb := &testbed{dir: dir, store: st, plat: plat, enclave: testEnclave, keys: map[string][]byte{}}
	for _, name := range []string{"default", "model", "other"} {
		if _, err := st.CreateKey(context.Background(), name); err != nil {
			t.Fatal(err)
		}
		tb.keys[name], _, _ = st.Key(context.Background(), name, store.Current)
	}
	srv, err := NewServer(cfg, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tb.serve(t, srv)
	t.Cleanup(func() {
		tb.server.Shutdown(context.Background())
		tb.store.Close()
	})
	ca, _ := os.ReadFile(filepath.Join(dir, SetupCACert))
	tb.roots = x509.NewCertPool()
	tb.roots.AppendCertsFromPEM(ca)
	return tb
}

// serve makes srv the testbed's server, serving on a new loopback port, and returns what its
// Serve returns once it ends.
func (tb *testbed) serve(t *testing.T, srv *Server) <-chan error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return tb.serveOn(srv, ln)
}

// serveOn makes srv the testbed's server, serving on ln, and returns what its Serve returns
// once it ends.
func (tb *testbed) serveOn(srv *Server, ln net.Listener) <-chan error {
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	tb.server, tb.addr = srv, "localhost:"+port
	return served
}

// pinClock replaces the server with one of the same configuration whose clock, at which it
// verifies evidence and dates audit records, stands still at at.
func (tb *testbed) pinClock(t *testing.T, at time.Time) {
	t.Helper()
	tb.server.Shutdown(context.Background())
	srv, err := NewServer(tb.server.state.Load().cfg, tb.store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.now = func() time.Time { return at }
	tb.serve(t, srv)
}

func (tb *testbed) client(a attest.Attester) *client.Client {
	return &client.Client{Servers: []string{tb.addr}, Roots: tb.roots, Attester: a, Timeout: 10 * time.Second}
}

// audit returns the audit records.
func (tb *testbed) audit(t *testing.T) []store.AuditRecord {
	t.Helper()
	var all []store.AuditRecord
	for r, err := range tb.store.AuditRecords(context.Background(), store.AuditFilter{}) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, r)
	}
	return all
}

// lastAudit waits for the audit record of the connection that follows the first seen ones (the
// server writes it after answering) and returns it.
func (tb *testbed) lastAudit(t *testing.T, seen int) store.AuditRecord {
	t.Helper()
	for range 200 {
		if all := tb.audit(t); len(all) > seen {
			return all[seen]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no audit record")
	return store.AuditRecord{}
}

const byEnclave = `
[[workload]]
name = "pytorch"
tee = "sgx"
mrenclave = ["%[1]x"]
allow_simulated = true
keys = ["default", "model"]
`

func TestProvisionGranted(t *testing.T) {
	tb := newTestbed(t, byEnclave)
	c := tb.client(sim.Attester{Platform: tb.plat, Enclave: tb.enclave})
	seen := len(tb.audit(t))
	secret, err := c.FetchGramine(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(secret, tb.keys["default"]) {
		t.Error("Gramine's protocol did not give the workload's first key")
	}
	rec := tb.lastAudit(t, seen)
	if rec.Decision != store.Allow || rec.Workload != "pytorch" || rec.Keys[0] != "default" || rec.MREnclave != fmt.Sprintf("%x", tb.enclave.MREnclave) || rec.Platform != "simulated" {
		t.Errorf("audit record %+v", rec)
	}
	keys, err := c.Fetch(context.Background(), "model", "default")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(keys[0], tb.keys["model"]) || !bytes.Equal(keys[1], tb.keys["default"]) {
		t.Error("named keys differ")
	}
}

// TestProvisionManifest checks through TLS that a policy's manifest admits the workload whose
// measurement the report data carries (attest.ForWorkload), refuses another in the same enclave,
// and that the audit record names the workload's measurement either way.
func TestProvisionManifest(t *testing.T) {
	admitted, other := sha256.Sum256([]byte("app.manifest")), sha256.Sum256([]byte("other.manifest"))
	tb := newTestbed(t, byEnclave+fmt.Sprintf("manifest = [\"%x\"]\n", admitted))
	a := sim.Attester{Platform: tb.plat, Enclave: tb.enclave}
	seen := len(tb.audit(t))
	if _, err := tb.client(attest.ForWorkload(a, admitted)).Fetch(context.Background(), "default"); err != nil {
		t.Fatal(err)
	}
	if rec := tb.lastAudit(t, seen); rec.Decision != store.Allow || rec.Manifest != fmt.Sprintf("%x", admitted) {
		t.Errorf("audit record %+v", rec)
	}
	for _, tc := range []struct {
		name string
		a    attest.Attester
		want string
	}{
		{"other manifest", attest.ForWorkload(a, other), fmt.Sprintf("manifest %x is not the one allowed", other)},
		{"no manifest", a, "the evidence carries no manifest"},
	} {
		seen := len(tb.audit(t))
		if _, err := tb.client(tc.a).Fetch(context.Background(), "default"); err == nil {
			t.Fatalf("%s: admitted", tc.name)
		}
		rec := tb.lastAudit(t, seen)
		if rec.Decision != store.Deny || !strings.Contains(rec.Reason, tc.want) {
			t.Errorf("%s: audit record %+v, want reason %q", tc.name, rec, tc.want)
		}
		if tc.a != a && rec.Manifest != fmt.Sprintf("%x", other) {
			t.Errorf("%s: audit record names manifest %q", tc.name, rec.Manifest)
		}
	}
}

// unbound attests with report data of its own, not the TLS key's.
type unbound struct{ sim.Attester }

func (u unbound) Attest(attest.ReportData) ([]byte, error) {
	return u.Attester.Attest(attest.ReportData{1, 2, 3})
}

func TestProvisionRefused(t *testing.T) {
	const policy = `
[[workload]]
name = "pytorch"
tee = "sgx"
mrsigner = "%[2]x"
isv_prod_id = 1
min_isv_svn = 2
allow_simulated = true
keys = ["default"]
`
	tb := newTestbed(t, policy)
	other, err := sim.Init(filepath.Join(t.TempDir(), "other"), "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	outdated, err := sim.Init(filepath.Join(t.TempDir(), "old"), "OutOfDate", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := tb.server.state.Load().cfg
	cfg.SimPlatforms = append(cfg.SimPlatforms, outdated.Dir)
	if err := tb.server.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	with := func(change func(*sim.Enclave)) sim.Attester {
		e := tb.enclave
		change(&e)
		return sim.Attester{Platform: tb.plat, Enclave: e}
	}
	for _, tc := range []struct {
		name     string
		attester attest.Attester
		keys     []string
		want     string
	}{
		{"wrong mrsigner", with(func(e *sim.Enclave) { e.MRSigner[0] ^= 1 }), nil, "mrsigner"},
		{"wrong product", with(func(e *sim.Enclave) { e.ISVProdID = 9 }), nil, "isv_prod_id 9 is not 1"},
		{"lower svn", with(func(e *sim.Enclave) { e.ISVSVN = 1 }), nil, "isv_svn 1 is below 2"},
		{"debug", with(func(e *sim.Enclave) { e.Debug = true }), nil, "debug enclaves are not allowed"},
		{"untrusted platform", sim.Attester{Platform: other, Enclave: tb.enclave}, nil, "does not lead to a trusted root"},
		{"outdated TCB", sim.Attester{Platform: outdated, Enclave: tb.enclave}, nil, `TCB status OutOfDate is not accepted (accept_tcb = ["UpToDate"])); TCB OutOfDate: the platform has known vulnerabilities that an update fixes`},
		{"not bound to the TLS key", unbound{with(func(*sim.Enclave) {})}, nil, "not bound"},
		{"key not in the policy", with(func(*sim.Enclave) {}), []string{"other"}, `may not have key "other"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tb.client(tc.attester)
			seen := len(tb.audit(t))
			_, err := c.Fetch(context.Background(), append([]string{"default"}, tc.keys...)...)
			rec := tb.lastAudit(t, seen)
			if rec.Decision != store.Deny || !strings.Contains(rec.Reason, tc.want) {
				t.Errorf("audit: %s: %q", rec.Decision, rec.Reason)
			}
			// The client is told where the reason is, and nothing of the policy.
			ref := fmt.Sprintf("see audit record %s: the data owner reads why with ppml audit --ref %[1]s", tb.store.AuditRef(rec.ID))
			if !errors.Is(err, wire.ErrRefused) || !strings.Contains(err.Error(), ref) {
				t.Fatalf("client: err = %v, want a refusal saying %q", err, ref)
			}
			for _, secret := range []string{tc.want, "pytorch", "default", "isv", "mrsigner"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("client: err = %v tells the peer %q", err, secret)
				}
			}
			// A Gramine client learns nothing but a closed connection.
			if _, err := c.FetchGramine(context.Background()); err == nil && tc.keys == nil {
				t.Error("Gramine protocol: granted")
			}
		})
	}
}

// TestExplainRefusals: with explain_refusals, a development setting, the client is told the
// reason as well.
func TestExplainRefusals(t *testing.T) {
	tb := newTestbed(t, "explain_refusals = true\n"+byEnclave)
	e := tb.enclave
	e.MREnclave[0] ^= 1
	seen := len(tb.audit(t))
	_, err := tb.client(sim.Attester{Platform: tb.plat, Enclave: e}).Fetch(context.Background(), "default")
	rec := tb.lastAudit(t, seen)
	if want := fmt.Sprintf("%s (audit record %s)", rec.Reason, tb.store.AuditRef(rec.ID)); !errors.Is(err, wire.ErrRefused) || !strings.Contains(err.Error(), want) {
		t.Fatalf("client: err = %v, want %q", err, want)
	}
}

func TestProvisionOutdatedAccepted(t *testing.T) {
	tb := newTestbed(t, byEnclave+`accept_tcb = ["UpToDate", "OutOfDate"]
`)
	old, err := sim.Init(filepath.Join(tb.dir, "old"), "OutOfDate", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := tb.server.state.Load().cfg
	cfg.SimPlatforms = append(cfg.SimPlatforms, old.Dir)
	if err := tb.server.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	seen := len(tb.audit(t))
	if _, err := tb.client(sim.Attester{Platform: old, Enclave: tb.enclave}).Fetch(context.Background(), "default"); err != nil {
		t.Fatal(err)
	}
	if rec := tb.lastAudit(t, seen); rec.TCBStatus != "OutOfDate" || rec.Decision != store.Allow {
		t.Errorf("audit %+v", rec)
	}
}

func TestProvisionRevokedPCK(t *testing.T) {
	tb := newTestbed(t, byEnclave)
	if err := tb.plat.RevokePCK(time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := tb.server.Reload(tb.server.state.Load().cfg); err != nil {
		t.Fatal(err)
	}
	seen := len(tb.audit(t))
	_, err := tb.client(sim.Attester{Platform: tb.plat, Enclave: tb.enclave}).Fetch(context.Background(), "default")
	if !errors.Is(err, wire.ErrRefused) {
		t.Fatalf("err = %v", err)
	}
	if rec := tb.lastAudit(t, seen); !strings.Contains(rec.Reason, "revoked") {
		t.Errorf("audit reason %q", rec.Reason)
	}
}

func TestProvisionNoClientCertificate(t *testing.T) {
	tb := newTestbed(t, byEnclave)
	seen := len(tb.audit(t))
	conn, err := tls.Dial("tcp", tb.addr, &tls.Config{RootCAs: tb.roots, ServerName: "localhost"})
	if err == nil {
		_, err = conn.Write([]byte("SECRET_PROVISION_RA_TLS_REQUEST_V1\x00"))
		if err == nil {
			_, err = conn.Read(make([]byte, 1))
		}
		conn.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate was answered")
	}
	if rec := tb.lastAudit(t, seen); rec.Decision != store.Deny || !strings.Contains(rec.Reason, "certificate") {
		t.Errorf("audit %+v", rec)
	}
}

// TestNextServer: an unreachable server is skipped for the next one.
func TestNextServer(t *testing.T) {
	tb := newTestbed(t, byEnclave)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	c := tb.client(sim.Attester{Platform: tb.plat, Enclave: tb.enclave})
	c.Servers = []string{dead, tb.addr}
	if _, err := c.Fetch(context.Background(), "default"); err != nil {
		t.Fatal(err)
	}
	c.Servers = []string{dead}
	if _, err := c.Fetch(context.Background(), "default"); err == nil || !strings.Contains(err.Error(), dead) {
		t.Errorf("only a dead server: %v", err)
	}
}
