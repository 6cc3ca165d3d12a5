// Package mesh gives a workload the network of its ppml.network mode: a network namespace of its
// own holding loopback only ("none"), or loopback and a TUN device whose packets a userspace
// WireGuard device (golang.zx2c4.com/wireguard), which the launcher runs on the host's network,
// carries encrypted to the job's other nodes ("mesh"). The workload is put in the namespace by
// whoever starts it (package sandbox, with setns); the namespace has no route but the mesh's,
// so the workload reaches nothing else.
package mesh

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// Interface is the name of the mesh's TUN device in the workload's namespace, which PyTorch's
// GLOO_SOCKET_IFNAME names.
const Interface = "ppml0"

// Overhead is what WireGuard adds to each of the mesh's packets on the path between nodes: an
// IPv6 header (40 bytes; IPv4's is 20), UDP's (8) and its own (32). The mesh's MTU is the
// path's less Overhead, as wg-quick sets it: 1420 on an Ethernet path of 1500.
const Overhead = 80

// MinMTU and MaxMTU bound the mesh's MTU: the IPv4 datagram that every host must accept, and
// the largest that WireGuard's messages can carry in one UDP datagram (an IP packet of 64 KiB
// at most, Overhead included).
const (
	MinMTU = 576
	MaxMTU = 1<<16 - 1 - Overhead
)

// Namespace is a network namespace made for a workload: loopback, up, and with NewNamespace's
// withTUN the mesh's TUN device, down until a Node configures it.
type Namespace struct {
	file *os.File // the namespace, for setns
	sock int      // an AF_INET socket made in the namespace, for the ioctls on its interfaces
	tun  int      // the TUN device's descriptor, or -1
}

// NewNamespace makes a network namespace with loopback up and, with withTUN, the TUN device
// Interface. It needs CAP_SYS_ADMIN and, for the TUN device, /dev/net/tun.
func NewNamespace(withTUN bool) (*Namespace, error) {
	type result struct {
		ns  *Namespace
		err error
	}
	done := make(chan result)
	go func() {
		// The thread enters the new namespace and never leaves it: left locked, it ends with
		// this goroutine, and no other goroutine runs on it meanwhile.
		runtime.LockOSThread()
		ns, err := enterNew(withTUN)
		done <- result{ns, err}
	}()
	r := <-done
	return r.ns, r.err
}

// enterNew moves the calling thread to a new network namespace and prepares it.
func enterNew(withTUN bool) (*Namespace, error) {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("make a network namespace: %w", err)
	}
	ns := &Namespace{sock: -1, tun: -1}
	var err error
	if ns.file, err = os.Open("/proc/thread-self/ns/net"); err != nil {
		return nil, fmt.Errorf("make a network namespace: %w", err)
	}
	if ns.sock, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
		ns.Close()
		return nil, fmt.Errorf("make a network namespace: socket: %w", err)
	}
	if err := ns.up("lo"); err != nil {
		ns.Close()
		return nil, err
	}
	if withTUN {
		if ns.tun, err = openTUN(); err != nil {
			ns.Close()
			return nil, err
		}
	}
	return ns, nil
}

// openTUN makes the TUN device Interface in the calling thread's network namespace, with the
// virtio header that lets the kernel hand WireGuard large segments to split (TSO).
func openTUN() (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("the mesh needs a TUN device (load the tun module: modprobe tun; in a container, pass --device /dev/net/tun): %w", err)
	}
	ifr, err := unix.NewIfreq(Interface)
	if err == nil {
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("make the TUN device %s: %w", Interface, err)
	}
	return fd, nil
}

// File is the namespace, for setns(2) with CLONE_NEWNET. It stays open until Close.
func (ns *Namespace) File() *os.File { return ns.file }

// Close closes what ns holds; the namespace goes away with the last process in it.
func (ns *Namespace) Close() error {
	if ns.tun >= 0 {
		unix.Close(ns.tun)
		ns.tun = -1
	}
	if ns.sock >= 0 {
		unix.Close(ns.sock)
		ns.sock = -1
	}
	if ns.file != nil {
		return ns.file.Close()
	}
	return nil
}

// up sets the interface name up.
func (ns *Namespace) up(name string) error {
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		err = unix.IoctlIfreq(ns.sock, unix.SIOCGIFFLAGS, ifr)
	}
	if err == nil {
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		err = unix.IoctlIfreq(ns.sock, unix.SIOCSIFFLAGS, ifr)
	}
	if err != nil {
		return fmt.Errorf("set %s up in the workload's network namespace: %w", name, err)
	}
	return nil
}

// address gives the interface name the IPv4 address and prefix p, and the MTU mtu; the
// kernel routes p to it once it is up, and nothing else.
func (ns *Namespace) address(name string, p netip.Prefix, mtu int) error {
	maskAddr := netip.AddrFrom4(prefixMask(p.Bits()))
	for _, step := range []struct {
		req  uint
		set  func(*unix.Ifreq) error
		what string
	}{
		{unix.SIOCSIFADDR, func(r *unix.Ifreq) error { return r.SetInet4Addr(p.Addr().AsSlice()) }, "address"},
		{unix.SIOCSIFNETMASK, func(r *unix.Ifreq) error { return r.SetInet4Addr(maskAddr.AsSlice()) }, "netmask"},
		{unix.SIOCSIFMTU, func(r *unix.Ifreq) error { r.SetUint32(uint32(mtu)); return nil }, "MTU"},
	} {
		ifr, err := unix.NewIfreq(name)
		if err == nil {
			err = step.set(ifr)
		}
		if err == nil {
			err = unix.IoctlIfreq(ns.sock, step.req, ifr)
		}
		if err != nil {
			return fmt.Errorf("set the %s of %s to %v: %w", step.what, name, p, err)
		}
	}
	return ns.up(name)
}

// prefixMask is the IPv4 netmask of a prefix of bits bits.
func prefixMask(bits int) [4]byte {
	m := ^uint32(0) << (32 - bits)
	if bits == 0 {
		m = 0
	}
	return [4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}
}

// Config is a node's place in the mesh, as the provisioning server gives it.
type Config struct {
	// Address is the node's address in the mesh, with the mesh's prefix length.
	Address netip.Prefix
	// Peers are the job's other nodes.
	Peers []Peer
	// MTULimit, unless 0, caps the mesh's MTU, which is otherwise the path's to the peers
	// less Overhead: for a network whose path MTU is smaller than its interfaces'.
	MTULimit int
}

// Peer is another node of the mesh.
type Peer struct {
	PublicKey [32]byte       // its WireGuard key
	Endpoint  netip.AddrPort // where its launcher receives WireGuard's packets
	Address   netip.Addr     // its address in the mesh
}

// Keepalive is how often a node sends a packet to each peer when it has nothing else to send,
// in seconds, so that a peer that died shows as silent (Node.Silent).
const Keepalive = 5

// answerFirst is how long a node waits before it turns its keepalive on for a peer that starts
// their handshake (the one with the smaller key): half Keepalive, so that, should that peer's
// first initiation be lost, its retries (every 5 s) and this node's initiation stay apart.
const answerFirst = Keepalive * time.Second / 2

// Node is this node's WireGuard device: its key, made by Listen, never leaves it.
type Node struct {
	ns        *Namespace
	tun       *meshTUN
	dev       *device.Device
	PublicKey [32]byte // to give the other nodes
	Port      uint16   // the UDP port it listens on, on the host's network

	mu        sync.Mutex
	keepalive *time.Timer // turns the keepalive on for the peers that start the handshake
	closed    bool
}

// Listen starts the WireGuard device of the TUN device of ns, listening on UDP port (0 for
// any) on the calling thread's network, with a key of its own. It carries nothing until
// Configure.
func Listen(ns *Namespace, port uint16, log *slog.Logger) (*Node, error) {
	if ns.tun < 0 {
		return nil, errors.New("the network namespace has no TUN device")
	}
	// A descriptor of its own: the device closes it.
	fd, err := unix.FcntlInt(uintptr(ns.tun), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	// Unmonitored: the device lives in another namespace than this thread's, where its
	// monitor would watch the wrong interfaces.
	t, _, err := tun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open the TUN device %s: %w", Interface, err)
	}
	key, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Close()
		return nil, err
	}
	logf := func(level slog.Level) func(string, ...any) {
		return func(format string, args ...any) {
			log.Log(context.Background(), level, "wireguard: "+fmt.Sprintf(format, args...))
		}
	}
	n := &Node{ns: ns, tun: newMeshTUN(t)}
	n.dev = device.NewDevice(n.tun, conn.NewDefaultBind(), &device.Logger{Verbosef: logf(slog.LevelDebug - 4), Errorf: logf(slog.LevelWarn)})
	copy(n.PublicKey[:], key.PublicKey().Bytes())
	priv := key.Bytes()
	err = n.dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=%d\n", hex.EncodeToString(priv), port))
	clear(priv)
	if err == nil {
		err = n.dev.Up() // which binds the port
	}
	if err != nil {
		n.dev.Close()
		return nil, fmt.Errorf("start WireGuard on UDP port %d: %w", port, err)
	}
	n.Port, err = n.listenPort()
	if err != nil {
		n.dev.Close()
		return nil, err
	}
	return n, nil
}

// meshTUN is the mesh's TUN device with the MTU that Configure gives it: the device's own would
// ask this thread's namespace, not the workload's.
type meshTUN struct {
	tun.Device
	mtu    atomic.Int32
	events chan tun.Event
	closed sync.Once
}

func newMeshTUN(t tun.Device) *meshTUN {
	m := &meshTUN{Device: t, events: make(chan tun.Event, 1)}
	m.mtu.Store(device.DefaultMTU)
	return m
}

func (m *meshTUN) MTU() (int, error) { return int(m.mtu.Load()), nil }

// setMTU sets the MTU and tells WireGuard, which pads its packets up to it.
func (m *meshTUN) setMTU(mtu int) {
	m.mtu.Store(int32(mtu))
	select {
	case m.events <- tun.EventMTUUpdate:
	default: // an update not yet read reads the new MTU
	}
}

// Events are the MTU's updates; an unmonitored TUN device has no others.
func (m *meshTUN) Events() <-chan tun.Event { return m.events }

func (m *meshTUN) Close() error {
	err := m.Device.Close()
	m.closed.Do(func() { close(m.events) })
	return err
}

// pathMTU is the MTU of the route from the calling thread's network to addr as the kernel
// knows it: the outgoing interface's, or less where the route or path MTU discovery says so.
func pathMTU(addr netip.AddrPort) (int, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr)) // sends nothing
	if err != nil {
		return 0, err
	}
	defer c.Close()
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	level, opt := unix.IPPROTO_IP, unix.IP_MTU
	if addr.Addr().Is6() {
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_MTU
	}
	var mtu int
	if cerr := rc.Control(func(fd uintptr) { mtu, err = unix.GetsockoptInt(int(fd), level, opt) }); cerr != nil {
		return 0, cerr
	}
	return mtu, err
}

// mtu is the mesh's MTU for cfg: the smallest MTU of the paths to its peers, from the calling
// thread's network, less Overhead; at most MaxMTU and cfg.MTULimit.
func (cfg Config) mtu() (int, error) {
	mtu := MaxMTU
	if cfg.MTULimit != 0 {
		if cfg.MTULimit < MinMTU || cfg.MTULimit > MaxMTU {
			return 0, fmt.Errorf("the mesh's MTU limit %d is not between %d and %d", cfg.MTULimit, MinMTU, MaxMTU)
		}
		mtu = cfg.MTULimit
	}
	for _, p := range cfg.Peers {
		path, err := pathMTU(p.Endpoint)
		if err != nil {
			return 0, fmt.Errorf("the MTU of the path to the peer at %v: %w", p.Endpoint, err)
		}
		if path-Overhead < MinMTU {
			return 0, fmt.Errorf("the path to the peer at %v has an MTU of %d: the mesh needs %d at least (IPv4's %d and WireGuard's %d)", p.Endpoint, path, MinMTU+Overhead, MinMTU, Overhead)
		}
		mtu = min(mtu, path-Overhead)
	}
	return mtu, nil
}

// listenPort returns the UDP port that the device listens on.
func (n *Node) listenPort() (uint16, error) {
	state, err := n.dev.IpcGet()
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(state) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "listen_port="); ok {
			p, err := strconv.ParseUint(v, 10, 16)
			return uint16(p), err
		}
	}
	return 0, errors.New("WireGuard listens on no port")
}

// Configure gives the node its address and its peers, and sets the mesh's interface up: the
// workload's namespace then routes the mesh's prefix to the peers, each reachable at its
// address alone, and nothing else. The interface's MTU is the paths' to the peers, from the
// calling thread's network, less Overhead (Config.MTULimit).
func (n *Node) Configure(cfg Config) error {
	if !cfg.Address.Addr().Is4() {
		return fmt.Errorf("mesh address %v: only IPv4 meshes are supported", cfg.Address)
	}
	mtu, err := cfg.mtu()
	if err != nil {
		return err
	}
	// Turning the keepalive on starts a handshake. Of two nodes, only the one with the smaller
	// key starts it at once: two initiations that cross make both fail, and the retries, in
	// step, can go on failing for minutes. The other answers, and turns its keepalive on later.
	var b, later strings.Builder
	b.WriteString("replace_peers=true\n")
	for _, p := range cfg.Peers {
		key := hex.EncodeToString(p.PublicKey[:])
		keepalive := Keepalive
		if bytes.Compare(n.PublicKey[:], p.PublicKey[:]) > 0 {
			keepalive = 0
			fmt.Fprintf(&later, "public_key=%s\nupdate_only=true\npersistent_keepalive_interval=%d\n", key, Keepalive)
		}
		fmt.Fprintf(&b, "public_key=%s\nendpoint=%s\npersistent_keepalive_interval=%d\nreplace_allowed_ips=true\nallowed_ip=%s\n",
			key, p.Endpoint, keepalive, netip.PrefixFrom(p.Address, p.Address.BitLen()))
	}
	if err := n.dev.IpcSet(b.String()); err != nil {
		return fmt.Errorf("configure WireGuard's peers: %w", err)
	}
	if later.Len() > 0 {
		n.mu.Lock()
		if n.keepalive != nil {
			n.keepalive.Stop()
		}
		n.keepalive = time.AfterFunc(answerFirst, func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			if !n.closed {
				n.dev.IpcSet(later.String()) // update_only: a peer replaced since stays replaced
			}
		})
		n.mu.Unlock()
	}
	n.tun.setMTU(mtu)
	return n.ns.address(Interface, cfg.Address, mtu)
}

// MTU is the MTU of the mesh's interface, as Configure set it.
func (n *Node) MTU() int {
	mtu, _ := n.tun.MTU()
	return mtu
}

// Close stops the device, which closes its UDP socket and its TUN device's descriptor.
func (n *Node) Close() {
	n.mu.Lock()
	n.closed = true
	if n.keepalive != nil {
		n.keepalive.Stop()
	}
	n.mu.Unlock()
	n.dev.Close()
}
