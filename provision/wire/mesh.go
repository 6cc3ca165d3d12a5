package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// ppml's extension for distributed jobs (docs/distributed.md): a node asks to join a job's
// mesh. The request starts with joinRequest, the length of Gramine's request, then the job's
// name (u8 length, 1 to maxName bytes), the node's WireGuard public key (32 bytes) and the UDP
// endpoint where its launcher receives WireGuard's packets (an IPv6 or IPv4-mapped address, 16
// bytes, and a u16 big-endian port; the unspecified address asks the server to use the address
// that the connection comes from). The response starts with joinResponse, then a status byte:
// granted, followed by the node's rank (u16 big-endian), the mesh's prefix length (u8) and the
// job's nodes by rank (a u16 big-endian count, 1 to maxMembers, and each node's IPv4 address in
// the mesh, 4 bytes, WireGuard public key, 32 bytes, and endpoint, 18 bytes as above); or
// refused, followed by the reason as for keys.
const (
	joinRequest  = "PPML_PROVISION_JOIN_REQUEST_V1\x00\x00\x00\x00\x00"   // 35 bytes
	joinResponse = "PPML_PROVISION_JOIN_RESPONSE_V1:\x00\x00\x00\x00\x00" // 37 bytes

	// MaxNodes bounds a job's nodes.
	MaxNodes = 1024

	endpointSize = 16 + 2
	memberSize   = 4 + 32 + endpointSize
)

// Join is a node's request to join a job's mesh.
type Join struct {
	Job       string
	PublicKey [32]byte       // the node's WireGuard key
	Endpoint  netip.AddrPort // where it receives WireGuard's packets; an unspecified address for the connection's
}

// Mesh is what the server gives a node that joined: its rank and the job's nodes.
type Mesh struct {
	Rank  int
	Bits  int      // the mesh's prefix length
	Nodes []Member // by rank, the node's own included
}

// Member is one node of a job's mesh.
type Member struct {
	Address   netip.Addr // IPv4, in the mesh
	PublicKey [32]byte
	Endpoint  netip.AddrPort
}

// readJoin reads a join request after its magic.
func readJoin(r io.Reader) (*Join, error) {
	job, err := readShort(r, 1, maxName)
	if err != nil {
		return nil, fmt.Errorf("read job name: %w", err)
	}
	j := &Join{Job: string(job)}
	var b [32 + endpointSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return nil, fmt.Errorf("read join request: %w", err)
	}
	copy(j.PublicKey[:], b[:32])
	j.Endpoint = getEndpoint(b[32:])
	return j, nil
}

// getEndpoint decodes an endpoint of endpointSize bytes, IPv4-mapped addresses as IPv4.
func getEndpoint(b []byte) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[:16])).Unmap(), binary.BigEndian.Uint16(b[16:]))
}

// appendEndpoint appends e in endpointSize bytes; an invalid address is the unspecified one.
func appendEndpoint(b []byte, e netip.AddrPort) []byte {
	a := e.Addr()
	if !a.IsValid() {
		a = netip.IPv6Unspecified()
	}
	a16 := a.As16()
	b = append(b, a16[:]...)
	return binary.BigEndian.AppendUint16(b, e.Port())
}

// marshalJoin returns the join request j as a client sends it.
func marshalJoin(j *Join) ([]byte, error) {
	if len(j.Job) == 0 || len(j.Job) > maxName {
		return nil, fmt.Errorf("job name %q: 1 to %d bytes", j.Job, maxName)
	}
	b := append([]byte(joinRequest), byte(len(j.Job)))
	b = append(append(b, j.Job...), j.PublicKey[:]...)
	return appendEndpoint(b, j.Endpoint), nil
}

// GrantJoin returns the response that admits a node to its job's mesh.
func GrantJoin(m *Mesh) []byte {
	b := append([]byte(joinResponse), statusGranted)
	b = binary.BigEndian.AppendUint16(b, uint16(m.Rank))
	b = append(b, byte(m.Bits))
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Nodes)))
	for _, n := range m.Nodes {
		a := n.Address.As4()
		b = append(append(b, a[:]...), n.PublicKey[:]...)
		b = appendEndpoint(b, n.Endpoint)
	}
	return b
}

// ReadJoinResponse reads the answer to a join request: the node's place in the mesh.
func ReadJoinResponse(r io.Reader) (*Mesh, error) {
	if err := readStatus(r, joinResponse); err != nil {
		return nil, err
	}
	var head [5]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	m := &Mesh{Rank: int(binary.BigEndian.Uint16(head[:2])), Bits: int(head[2])}
	count := int(binary.BigEndian.Uint16(head[3:]))
	switch {
	case count == 0 || count > MaxNodes:
		return nil, fmt.Errorf("a mesh of %d nodes (1 to %d)", count, MaxNodes)
	case m.Rank >= count:
		return nil, fmt.Errorf("rank %d in a mesh of %d nodes", m.Rank, count)
	case m.Bits > 32:
		return nil, fmt.Errorf("prefix length %d of an IPv4 mesh", m.Bits)
	}
	b := make([]byte, count*memberSize)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	for i := range count {
		e := b[i*memberSize:]
		n := Member{Address: netip.AddrFrom4([4]byte(e[:4])), Endpoint: getEndpoint(e[36:memberSize])}
		copy(n.PublicKey[:], e[4:36])
		m.Nodes = append(m.Nodes, n)
	}
	return m, nil
}

// readStatus reads a ppml response's magic, which must be magic, and its status: nil when
// granted, the server's reason (ErrRefused) when refused.
func readStatus(r io.Reader, magic string) error {
	head := make([]byte, len(magic)+1)
	if _, err := io.ReadFull(r, head); err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if string(head[:len(magic)]) != magic {
		return errors.New("not a provisioning response")
	}
	switch head[len(magic)] {
	case statusGranted:
		return nil
	case statusRefused:
		var n [2]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return fmt.Errorf("%w (reason unreadable: %v)", ErrRefused, err)
		}
		reason := make([]byte, min(binary.BigEndian.Uint16(n[:]), maxReason))
		if _, err := io.ReadFull(r, reason); err != nil {
			return fmt.Errorf("%w (reason unreadable: %v)", ErrRefused, err)
		}
		return fmt.Errorf("%w: %s", ErrRefused, reason)
	default:
		return fmt.Errorf("unknown response status %d", head[len(magic)])
	}
}
