package provision

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/ppml/ppml/attest/sim"
	"github.com/ppml/ppml/provision/wire"
	"github.com/ppml/ppml/store"
)

const withJob = byEnclave + `
[[workload]]
name = "other"
tee = "sgx"
mrenclave = ["%[2]x"]
allow_simulated = true
keys = ["other"]

[[job]]
name = "digits"
workloads = ["pytorch"]
nodes = 3
subnet = "10.77.0.0/24"
join_timeout = "2s"
`

// joinAll has the nodes given join job at once, node i with WireGuard key {i} and the
// endpoint 192.0.2.i:4000 (port only for node 0, whose address the server fills in).
func joinAll(tb *testbed, job string, enclaves ...sim.Enclave) ([]*wire.Mesh, []error) {
	meshes, errs := make([]*wire.Mesh, len(enclaves)), make([]error, len(enclaves))
	var wg sync.WaitGroup
	for i, e := range enclaves {
		wg.Go(func() {
			end := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 4000)
			if i == 0 {
				end = netip.AddrPortFrom(netip.IPv4Unspecified(), 4000)
			}
			c := tb.client(sim.Attester{Platform: tb.plat, Enclave: e})
			meshes[i], errs[i] = c.Join(context.Background(), wire.Join{Job: job, PublicKey: [32]byte{byte(i)}, Endpoint: end})
		})
		time.Sleep(50 * time.Millisecond) // in order, so that node i has rank i
	}
	wg.Wait()
	return meshes, errs
}

func TestJoin(t *testing.T) {
	tb := newTestbed(t, withJob)
	seen := len(tb.audit(t))
	meshes, errs := joinAll(tb, "digits", tb.enclave, tb.enclave, tb.enclave)
	for i, m := range meshes {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		if m.Rank != i || m.Bits != 24 || len(m.Nodes) != 3 {
			t.Fatalf("node %d: %+v", i, m)
		}
		for r, n := range m.Nodes {
			want := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(r)}), 4000)
			if r == 0 {
				want = netip.MustParseAddrPort("127.0.0.1:4000") // the connection's
			}
			if n.Address != netip.AddrFrom4([4]byte{10, 77, 0, byte(r + 1)}) || n.PublicKey != [32]byte{byte(r)} || n.Endpoint != want {
				t.Errorf("node %d sees node %d as %+v", i, r, n)
			}
		}
	}
	recs := tb.audit(t)[seen:]
	for range 100 {
		if len(recs) == 3 {
			break
		}
		time.Sleep(10 * time.Millisecond)
		recs = tb.audit(t)[seen:]
	}
	if len(recs) != 3 {
		t.Fatalf("%d audit records, want one per join", len(recs))
	}
	for _, rec := range recs {
		if rec.Decision != store.Allow || rec.Workload != "pytorch" || !strings.Contains(rec.Reason, `joined job "digits" as node`) {
			t.Errorf("audit record %+v", rec)
		}
	}

	// The next join starts a round of its own.
	meshes, errs = joinAll(tb, "digits", tb.enclave, tb.enclave, tb.enclave)
	if errs[0] != nil || meshes[2].Rank != 2 {
		t.Fatalf("second round: %v", errs)
	}
}

func TestJoinRefused(t *testing.T) {
	tb := newTestbed(t, withJob)
	other := sim.Enclave{MREnclave: tb.enclave.MRSigner}
	stranger := sim.Enclave{MREnclave: sha256.Sum256([]byte("changed script"))}
	for _, tc := range []struct {
		name, job string
		enclave   sim.Enclave
		want      string
	}{
		{"not admitted", "digits", stranger, "no workload admits it"},
		{"not in the job", "digits", other, `workload "other" may not join job "digits"`},
		{"no such job", "mnist", tb.enclave, `the policy has no job "mnist"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := len(tb.audit(t))
			c := tb.client(sim.Attester{Platform: tb.plat, Enclave: tc.enclave})
			_, err := c.Join(context.Background(), wire.Join{Job: tc.job})
			if !errors.Is(err, wire.ErrRefused) {
				t.Fatalf("join: %v, want a refusal", err)
			}
			if rec := tb.lastAudit(t, seen); rec.Decision != store.Deny || !strings.Contains(rec.Reason, tc.want) {
				t.Errorf("audit record %+v, want a refusal for %q", rec, tc.want)
			}
		})
	}

	// A refused node never joins: the two admitted ones wait for a third in vain, and are
	// refused when join_timeout ends, not before and not much later.
	start := time.Now()
	_, errs := joinAll(tb, "digits", tb.enclave, stranger, tb.enclave)
	took := time.Since(start)
	for i, err := range errs {
		want := "only 2 of its 3 nodes joined within join_timeout (2s)"
		if i == 1 {
			want = "see audit record"
		}
		if !errors.Is(err, wire.ErrRefused) || !strings.Contains(err.Error(), want) {
			t.Errorf("node %d: %v, want %q", i, err, want)
		}
	}
	if took < 2*time.Second || took > 5*time.Second {
		t.Errorf("the nodes waited %v for a join_timeout of 2s", took)
	}
}

// TestJoinLeft checks that a node that gives up leaves its round: the round it left fills
// with others.
func TestJoinLeft(t *testing.T) {
	tb := newTestbed(t, withJob)
	ctx, cancel := context.WithCancel(context.Background())
	left := make(chan error)
	go func() {
		c := tb.client(sim.Attester{Platform: tb.plat, Enclave: tb.enclave})
		_, err := c.Join(ctx, wire.Join{Job: "digits", PublicKey: [32]byte{7}})
		left <- err
	}()
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-left; err == nil {
		t.Fatal("a cancelled join succeeded")
	}
	time.Sleep(100 * time.Millisecond)
	meshes, errs := joinAll(tb, "digits", tb.enclave, tb.enclave, tb.enclave)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	for _, n := range meshes[0].Nodes {
		if n.PublicKey == [32]byte{7} {
			t.Fatal("the node that left is in the mesh")
		}
	}
}

func TestJobConfig(t *testing.T) {
	for _, tc := range []struct{ job, want string }{
		{`name = "j"`, "no workloads"},
		{`name = "j"` + "\nworkloads = [\"x\"]", `no [[workload]] is named "x"`},
		{`name = "j"` + "\nworkloads = [\"pytorch\"]\nnodes = 0", "nodes = 0"},
		{`name = "j"` + "\nworkloads = [\"pytorch\"]\nnodes = 2\nsubnet = \"10.0.0.1/24\"", "host bits zero"},
		{`name = "j"` + "\nworkloads = [\"pytorch\"]\nnodes = 2\nsubnet = \"fd00::/64\"", "not an IPv4 prefix"},
		{`name = "j"` + "\nworkloads = [\"pytorch\"]\nnodes = 3\nsubnet = \"10.0.0.0/30\"", "room for 2 nodes, not 3"},
		{`name = "j"` + "\nworkloads = [\"pytorch\"]\nnodes = 2\nsubnet = \"10.0.0.0/30\"\njoin_timeout = \"-1s\"", "join_timeout must be positive"},
		{`workloads = ["pytorch"]`, "a job has no name"},
	} {
		cfg := Config{Workloads: Policy{{Name: "pytorch"}}}
		toml := fmt.Sprintf("[[job]]\n%s\n", tc.job)
		if err := decodeJobs(&cfg, toml); err != nil {
			t.Fatal(err)
		}
		if err := cfg.checkJobs(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.job, err, tc.want)
		}
	}
}

// decodeJobs decodes the [[job]]s of the TOML text into cfg.
func decodeJobs(cfg *Config, text string) error {
	_, err := toml.Decode(text, cfg)
	return err
}
