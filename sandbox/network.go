package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/mesh"
	"github.com/ppml/ppml/provision/wire"
)

// network is the workload's network as ppml.network makes it: nothing of its own for host; a
// namespace of its own for none and mesh, and for mesh the WireGuard device that carries its
// packets to the job's other nodes, and the environment that tells the workload its place.
type network struct {
	ns   *mesh.Namespace
	node *mesh.Node
	env  []string
}

// joinTimeout bounds a node's wait for the provisioning server's answer to its join: the
// server answers when the job's nodes have all joined, or refuses when its join_timeout ends.
const joinTimeout = 10 * time.Minute

// defaultMasterPort is MASTER_PORT unless the manifest sets it: PyTorch's usual.
const defaultMasterPort = "29500"

// setupNetwork makes the workload's network for m. For mesh it attests with opts.Attester and
// joins m's job at the provisioning servers, which answers once all the job's nodes joined.
func setupNetwork(ctx context.Context, m *manifest.Manifest, opts Options, log *slog.Logger) (*network, error) {
	n := &network{}
	if m.Network == manifest.NetworkHost {
		return n, nil
	}
	var err error
	if n.ns, err = mesh.NewNamespace(m.Network == manifest.NetworkMesh); err != nil {
		return nil, fmt.Errorf("ppml.network %q: %w", m.Network, err)
	}
	if m.Network != manifest.NetworkMesh {
		return n, nil
	}
	if err := n.join(ctx, m, opts, log); err != nil {
		n.close()
		return nil, fmt.Errorf("ppml.network %q, job %q: %w", m.Network, m.Job, err)
	}
	return n, nil
}

// join starts the WireGuard device, joins m's job and configures the device with the peers
// that the server gives.
func (n *network) join(ctx context.Context, m *manifest.Manifest, opts Options, log *slog.Logger) error {
	if opts.Attester == nil {
		return errors.New("joining a mesh needs remote attestation, and no TEE was chosen to attest with")
	}
	var err error
	if n.node, err = mesh.Listen(n.ns, opts.MeshEndpoint.Port(), log); err != nil {
		return err
	}
	c, err := newClient(m, opts.Attester)
	if err != nil {
		return err
	}
	c.Timeout = joinTimeout
	addr := opts.MeshEndpoint.Addr()
	if !addr.IsValid() {
		addr = netip.IPv4Unspecified() // the server's view of this host
	}
	t := time.Now()
	log.Info("joining the mesh: waiting for the job's other nodes", "job", m.Job, "port", n.node.Port)
	mm, err := c.Join(ctx, wire.Join{Job: m.Job, PublicKey: n.node.PublicKey, Endpoint: netip.AddrPortFrom(addr, n.node.Port)})
	if err != nil {
		return fmt.Errorf("join at %s: %w", strings.Join(c.Servers, ", "), err)
	}
	self := mm.Nodes[mm.Rank]
	if self.PublicKey != n.node.PublicKey {
		return fmt.Errorf("the server placed another WireGuard key at this node's rank %d", mm.Rank)
	}
	cfg := mesh.Config{Address: netip.PrefixFrom(self.Address, mm.Bits), MTULimit: opts.MeshMTU}
	for r, p := range mm.Nodes {
		if r != mm.Rank {
			cfg.Peers = append(cfg.Peers, mesh.Peer{PublicKey: p.PublicKey, Endpoint: p.Endpoint, Address: p.Address})
		}
	}
	if err := n.node.Configure(cfg); err != nil {
		return err
	}
	n.env = meshEnv(mm, m.Env)
	log.Info("joined the mesh", "job", m.Job, "rank", mm.Rank, "nodes", len(mm.Nodes), "address", cfg.Address, "mtu", n.node.MTU(), "time", time.Since(t))
	return nil
}

// meshEnv is the environment that tells the workload its place in the mesh mm: ppml's
// variables, and PyTorch's, which the manifest's own (env) override.
func meshEnv(mm *wire.Mesh, env map[string]manifest.EnvVar) []string {
	addrs := make([]string, len(mm.Nodes))
	for i, n := range mm.Nodes {
		addrs[i] = n.Address.String()
	}
	vars := []string{
		"PPML_MESH_ADDR=" + addrs[mm.Rank],
		"PPML_MESH_RANK=" + strconv.Itoa(mm.Rank),
		"PPML_MESH_SIZE=" + strconv.Itoa(len(mm.Nodes)),
		"PPML_MESH_PEERS=" + strings.Join(addrs, ","),
	}
	for _, v := range []string{
		"MASTER_ADDR=" + addrs[0],
		"MASTER_PORT=" + defaultMasterPort,
		"WORLD_SIZE=" + strconv.Itoa(len(mm.Nodes)),
		"RANK=" + strconv.Itoa(mm.Rank),
		// Gloo, NCCL and TensorPipe pick their interface by the host's name otherwise, which
		// the workload's namespace does not resolve.
		"GLOO_SOCKET_IFNAME=" + mesh.Interface,
		"NCCL_SOCKET_IFNAME=" + mesh.Interface,
		"TP_SOCKET_IFNAME=" + mesh.Interface,
	} {
		if _, set := env[v[:strings.IndexByte(v, '=')]]; !set {
			vars = append(vars, v)
		}
	}
	return vars
}

// file is the workload's network namespace, or nil for the host's.
func (n *network) file() *os.File {
	if n.ns == nil {
		return nil
	}
	return n.ns.File()
}

// close stops the WireGuard device and lets the namespace go with its last process.
func (n *network) close() {
	if n.node != nil {
		n.node.Close()
	}
	if n.ns != nil {
		n.ns.Close()
	}
}
