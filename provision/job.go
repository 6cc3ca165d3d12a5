package provision

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/ppml/ppml/provision/wire"
	"github.com/ppml/ppml/store"
)

// Job is one [[job]] of the policy: a distributed job whose nodes, each admitted as one of its
// workloads, join one mesh (docs/distributed.md). The server gives each node its address in the
// subnet and the WireGuard keys and endpoints of the others once all have joined.
type Job struct {
	Name      string   `toml:"name"`
	Workloads []string `toml:"workloads"` // the [[workload]]s whose evidence may join it
	Nodes     int      `toml:"nodes"`     // how many nodes it has
	// Subnet is the mesh's IPv4 prefix ("10.77.0.0/24"); node R gets its address R+1.
	Subnet string `toml:"subnet"`
	// JoinTimeout bounds the wait of the first node for the last; default one minute.
	JoinTimeout Duration `toml:"join_timeout"`

	subnet netip.Prefix
}

// defaultJoinTimeout is a job's join_timeout when the policy leaves it out.
const defaultJoinTimeout = time.Minute

// checkJobs validates the jobs of c, whose workloads are checked.
func (c *Config) checkJobs() error {
	names := map[string]bool{}
	for i := range c.Jobs {
		j := &c.Jobs[i]
		if err := j.check(c.Workloads); err != nil {
			return err
		}
		if names[j.Name] {
			return fmt.Errorf("two jobs are named %q", j.Name)
		}
		names[j.Name] = true
	}
	return nil
}

// check validates j and fills in its defaults.
func (j *Job) check(workloads Policy) error {
	if j.Name == "" {
		return errors.New("a job has no name")
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("job %q: %s", j.Name, fmt.Sprintf(format, args...))
	}
	if len(j.Name) > 64 {
		return fail("a job's name is 1 to 64 bytes, as ppml.job in the manifest")
	}
	if len(j.Workloads) == 0 {
		return fail("no workloads: name the [[workload]]s whose nodes may join it")
	}
	for _, w := range j.Workloads {
		if !slices.ContainsFunc(workloads, func(x Workload) bool { return x.Name == w }) {
			return fail("workloads: no [[workload]] is named %q", w)
		}
	}
	if j.Nodes < 1 || j.Nodes > wire.MaxNodes {
		return fail("nodes = %d: a job has 1 to %d nodes", j.Nodes, wire.MaxNodes)
	}
	var err error
	if j.subnet, err = netip.ParsePrefix(j.Subnet); err != nil || !j.subnet.Addr().Is4() || j.subnet.Masked() != j.subnet {
		return fail("subnet %q is not an IPv4 prefix such as 10.77.0.0/24 (with its host bits zero)", j.Subnet)
	}
	if hosts := 1<<(32-j.subnet.Bits()) - 2; hosts < j.Nodes {
		return fail("subnet %s has room for %d nodes, not %d", j.Subnet, max(hosts, 0), j.Nodes)
	}
	if j.JoinTimeout.Duration < 0 {
		return fail("join_timeout must be positive (leave it out for %v)", defaultJoinTimeout)
	}
	if j.JoinTimeout.Duration == 0 {
		j.JoinTimeout.Duration = defaultJoinTimeout
	}
	return nil
}

// address is the mesh address of the node of rank r.
func (j *Job) address(r int) netip.Addr {
	a := j.subnet.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) + uint32(r) + 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// rounds holds, for each job, the nodes waiting for the rest of their round: a round ends when
// the job's last node joins, and the next join starts another.
type rounds struct {
	mu   sync.Mutex
	open map[string]*round // by job name
}

// round is one start of a job: the nodes that joined it, in order.
type round struct {
	nodes []*wire.Join
	most  int           // the most nodes it had at once
	full  chan struct{} // closed when all joined
}

// join adds the node j to the open round of job and waits until the round is full, returning
// its place in the mesh, or until ctx ends or gone closes, which takes the node out of the round.
func (rs *rounds) join(ctx context.Context, job *Job, j *wire.Join, gone <-chan struct{}) (*wire.Mesh, error) {
	rs.mu.Lock()
	r := rs.open[job.Name]
	if r == nil {
		r = &round{full: make(chan struct{})}
		if rs.open == nil {
			rs.open = map[string]*round{}
		}
		rs.open[job.Name] = r
	}
	if slices.ContainsFunc(r.nodes, func(n *wire.Join) bool { return n.PublicKey == j.PublicKey }) {
		rs.mu.Unlock()
		return nil, fmt.Errorf("job %q: a node with this WireGuard key has joined already", job.Name)
	}
	r.nodes = append(r.nodes, j)
	r.most = max(r.most, len(r.nodes))
	if len(r.nodes) == job.Nodes {
		close(r.full)
		delete(rs.open, job.Name)
	}
	rs.mu.Unlock()

	select {
	case <-r.full:
		return r.mesh(job, j), nil
	case <-ctx.Done():
	case <-gone:
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	select {
	case <-r.full: // the last node came meanwhile
		return r.mesh(job, j), nil
	default:
	}
	r.nodes = slices.DeleteFunc(r.nodes, func(n *wire.Join) bool { return n == j })
	if len(r.nodes) == 0 && rs.open[job.Name] == r {
		delete(rs.open, job.Name)
	}
	select {
	case <-gone:
		return nil, fmt.Errorf("job %q: the node left before the job's %d nodes joined", job.Name, job.Nodes)
	default:
	}
	return nil, fmt.Errorf("job %q: only %d of its %d nodes joined within join_timeout (%v)", job.Name, r.most, job.Nodes, job.JoinTimeout.Duration)
}

// mesh is the place of node j in the full round r.
func (r *round) mesh(job *Job, j *wire.Join) *wire.Mesh {
	m := &wire.Mesh{Bits: job.subnet.Bits()}
	for i, n := range r.nodes {
		if n == j {
			m.Rank = i
		}
		m.Nodes = append(m.Nodes, wire.Member{Address: job.address(i), PublicKey: n.PublicKey, Endpoint: n.Endpoint})
	}
	return m
}

// job returns the policy's job named name, or nil.
func (c *Config) job(name string) *Job {
	for i := range c.Jobs {
		if c.Jobs[i].Name == name {
			return &c.Jobs[i]
		}
	}
	return nil
}

// joinRefusal is the reason to refuse the workload named workload a place in job (nil when the
// policy has no job named name), or "".
func joinRefusal(job *Job, name, workload string) string {
	switch {
	case job == nil:
		return fmt.Sprintf("the policy has no job %q (ppml.job of the manifest)", name)
	case !slices.Contains(job.Workloads, workload):
		return fmt.Sprintf("workload %q may not join job %q (its workloads are %q)", workload, name, job.Workloads)
	}
	return ""
}

// join serves a node's request to join a job, which the policy allows its workload: it waits,
// up to the job's join_timeout, until all the job's nodes joined, or the node left, then records
// the decision and answers. The node's endpoint, when it leaves its address unspecified, is
// the address that the connection comes from, peer. It reports whether the record was written.
func (s *Server) join(tc *tls.Conn, conn net.Conn, st *state, req *wire.Request, peer string, rec *store.AuditRecord) bool {
	job, j := st.cfg.job(req.Join.Job), *req.Join
	if a := j.Endpoint.Addr(); !a.IsValid() || a.IsUnspecified() {
		from, err := netip.ParseAddr(peer)
		if err != nil {
			rec.Reason = fmt.Sprintf("job %q: the node's endpoint is unspecified and its connection's address %q is not an IP address", job.Name, peer)
			return s.refuse(tc, st, req, rec, false)
		}
		j.Endpoint = netip.AddrPortFrom(from, j.Endpoint.Port())
	}
	deadline := time.Now().Add(job.JoinTimeout.Duration)
	conn.SetDeadline(deadline.Add(st.cfg.RequestTimeout.Duration))
	ctx, cancel := context.WithDeadline(s.requests, deadline)
	defer cancel()
	// A node that closes its connection leaves the round: it sends nothing else.
	gone := make(chan struct{})
	go func() {
		var b [1]byte
		tc.Read(b[:])
		close(gone)
	}()
	m, err := s.rounds.join(ctx, job, &j, gone)
	if err != nil {
		rec.Reason = err.Error()
		// The node is admitted to the job: it may know why the job did not start.
		return s.refuse(tc, st, req, rec, true)
	}
	rec.Decision = store.Allow
	rec.Reason = fmt.Sprintf("joined job %q as node %d of %d, mesh address %v/%d, WireGuard endpoint %v", job.Name, m.Rank, len(m.Nodes), m.Nodes[m.Rank].Address, m.Bits, j.Endpoint)
	// The join is on record before the node learns its peers.
	if _, err := s.store.AppendAudit(context.Background(), *rec); err != nil {
		rec.Decision = store.Deny
		rec.Reason = "audit log unavailable: " + err.Error()
		tc.Write(wire.Refusal(req, "the server cannot record its decision"))
		return false
	}
	if _, err := tc.Write(wire.GrantJoin(m)); err != nil {
		s.log.Warn("the mesh's peers may not have reached the node", "peer", rec.Peer, "err", err)
		return true
	}
	tc.Close()
	return true
}
