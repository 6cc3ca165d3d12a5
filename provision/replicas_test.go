package provision

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ppml/ppml/attest/sim"
	"github.com/ppml/ppml/internal/pgtest"
	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/provision/client"
	"github.com/ppml/ppml/provision/wire"
	"github.com/ppml/ppml/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// cluster is several servers over one PostgreSQL database, each with a store of its own, as
// separate ppml serve processes are.
type cluster struct {
	cfg      *Config
	roots    *x509.CertPool
	plat     *sim.Platform
	replicas []*replica
}

type replica struct {
	addr   string
	store  store.Store
	server *Server
}

// newCluster starts n servers over the database at url, which holds the keys default and model.
func newCluster(t *testing.T, url string, n int) *cluster {
	t.Helper()
	cfg, plat := newServerDir(t, url, byEnclave)
	c := &cluster{cfg: cfg, plat: plat, roots: x509.NewCertPool()}
	ca, _ := os.ReadFile(filepath.Join(filepath.Dir(cfg.TLSCert), SetupCACert))
	c.roots.AppendCertsFromPEM(ca)
	for i := range n {
		r := c.start(t)
		if i == 0 {
			for _, name := range []string{"default", "model"} {
				if _, err := r.store.CreateKey(context.Background(), name); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return c
}

// start starts one more server.
func (c *cluster) start(t *testing.T) *replica {
	t.Helper()
	st := openStore(t, c.cfg)
	srv, err := NewServer(c.cfg, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	r := &replica{addr: ln.Addr().String(), store: st, server: srv}
	t.Cleanup(r.kill)
	c.replicas = append(c.replicas, r)
	return r
}

// kill stops the replica as a process that dies does: its connections are cut, and its store
// closed.
func (r *replica) kill() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.server.Shutdown(ctx)
	r.store.Close()
}

// client fetches through servers, in order.
func (c *cluster) client(servers ...string) *client.Client {
	return &client.Client{Servers: servers, Roots: c.roots, Attester: sim.Attester{Platform: c.plat, Enclave: testEnclave},
		Timeout: 10 * time.Second, Backoff: 20 * time.Millisecond}
}

// releases counts the audit records of releases, and checks the chain.
func (c *cluster) releases(t *testing.T, st store.Store) int {
	t.Helper()
	n := 0
	for r, err := range st.AuditRecords(context.Background(), store.AuditFilter{}) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Decision == store.Allow {
			n++
		}
	}
	cert, err := tls.LoadX509KeyPair(c.cfg.TLSCert, c.cfg.TLSKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.VerifyAudit(context.Background(), st, []crypto.PublicKey{cert.PrivateKey.(crypto.Signer).Public()}, nil); err != nil {
		t.Errorf("the audit chain: %v", err)
	}
	return n
}

func TestReplicas(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d", n), func(t *testing.T) {
			c := newCluster(t, pgtest.Shared(t).NewDatabase(t), n)
			ctx := context.Background()
			// Every release through any replica is audited once, in one chain.
			var wg sync.WaitGroup
			var released atomic.Int64
			for i := range 4 * n {
				wg.Go(func() {
					cl := c.client(c.replicas[i%n].addr)
					for range 5 {
						if _, err := cl.Fetch(ctx, "default"); err != nil {
							t.Error(err)
							return
						}
						released.Add(1)
					}
				})
			}
			wg.Wait()
			for _, r := range c.replicas {
				r.server.checkpoint()
			}
			if got := c.releases(t, c.replicas[n-1].store); got != int(released.Load()) {
				t.Errorf("%d releases audited, %d made", got, released.Load())
			}

			// A key rotated through one replica is what the next fetch through each other gets;
			// a key deleted through one is refused by all.
			for i, r := range c.replicas {
				info, err := r.store.RotateKey(ctx, "default")
				if err != nil {
					t.Fatal(err)
				}
				want, _, _ := r.store.Key(ctx, "default", info.Version)
				for j, other := range c.replicas {
					if j == i {
						continue
					}
					got, err := c.client(other.addr).Fetch(ctx, "default")
					if err != nil || !bytes.Equal(got[0], want) {
						t.Errorf("after rotating through replica %d to version %d, replica %d releases another key (%v)", i, info.Version, j, err)
					}
				}
			}
			if err := c.replicas[0].store.DeleteKey(ctx, "model"); err != nil {
				t.Fatal(err)
			}
			for j, r := range c.replicas {
				if _, err := c.client(r.addr).Fetch(ctx, "model"); !errors.Is(err, wire.ErrRefused) {
					t.Errorf("replica %d after the key was deleted: %v", j, err)
				}
			}
		})
	}
}

// TestReplicasFailover: a client whose SECRET_PROVISION_SERVERS names replicas that are down
// gets its key from the next one, and the one that comes back serves again.
func TestReplicasFailover(t *testing.T) {
	c := newCluster(t, pgtest.Shared(t).NewDatabase(t), 3)
	m, err := manifest.Parse(fmt.Appendf(nil, "libos.entrypoint = \"/bin/app\"\nloader.env.SECRET_PROVISION_SERVERS = \"%s;%s;%s\"\n",
		c.replicas[0].addr, c.replicas[1].addr, c.replicas[2].addr))
	if err != nil {
		t.Fatal(err)
	}
	servers := m.Provisioning.Servers
	c.replicas[0].kill()
	c.replicas[1].kill()
	cl := c.client(servers...)
	cl.Tries, cl.Timeout = 2, 2*time.Second
	ctx := context.Background()
	want, _, _ := c.replicas[2].store.Key(ctx, "default", store.Current)
	got, err := cl.Fetch(ctx, "default")
	if err != nil || !bytes.Equal(got[0], want) {
		t.Fatalf("with two replicas down: %v", err)
	}
	c.replicas[2].kill()
	if _, err := cl.Fetch(ctx, "default"); err == nil {
		t.Fatal("a fetch succeeded with every replica down")
	}
	// A replica started again on the first address serves.
	back := c.start(t)
	if got, err := c.client(back.addr).Fetch(ctx, "default"); err != nil || !bytes.Equal(got[0], want) {
		t.Fatalf("restarted replica: %v", err)
	}
}

// TestReplicasChaos fetches keys through two replicas while one of them is killed and the
// database restarted: no release is without its audit record, and the chain holds.
func TestReplicasChaos(t *testing.T) {
	pg := pgtest.Start(t)
	c := newCluster(t, pg.NewDatabase(t), 2)
	ctx := context.Background()
	var released, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			cl := c.client(c.replicas[i%2].addr, c.replicas[(i+1)%2].addr)
			cl.Tries, cl.Timeout = 3, 3*time.Second
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := cl.Fetch(ctx, "default"); err != nil {
					failed.Add(1)
					continue
				}
				released.Add(1)
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	c.replicas[0].kill()
	time.Sleep(300 * time.Millisecond)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	before := released.Load()
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	if released.Load() == before {
		t.Error("no release after the database came back")
	}
	t.Logf("%d releases, %d failed fetches", released.Load(), failed.Load())
	c.replicas[1].server.checkpoint()
	// A release whose answer the kill cut off has a record and no key: there may be more
	// records than keys received, never fewer.
	if got := c.releases(t, c.replicas[1].store); int64(got) < released.Load() || int64(got) > released.Load()+8 {
		t.Errorf("%d releases audited, %d received", got, released.Load())
	}
}
