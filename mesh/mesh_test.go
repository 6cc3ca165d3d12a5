package mesh

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/ppml/ppml/internal/capture"
)

// needNet skips the tests that make network namespaces where they cannot.
func needNet(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("needs /dev/net/tun")
	}
}

// in runs f on a thread in the network namespace ns: the sockets it makes are ns's. f may
// call t.Fatal.
func in(t testing.TB, ns *os.File, f func()) {
	t.Helper()
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // the thread ends with the goroutine, in ns
		err := errStopped      // unless f returns
		defer func() { done <- err }()
		if err = unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			return
		}
		err = errStopped
		f()
		err = nil
	}()
	switch err := <-done; {
	case err == errStopped:
		t.FailNow() // f failed the test
	case err != nil:
		t.Fatal(err)
	}
}

// errStopped tells in that f stopped its goroutine (t.Fatal).
var errStopped = errors.New("stopped")

// pair makes two nodes, each with a namespace of its own, joined by a mesh 10.99.0.0/24 whose
// WireGuard packets cross this thread's loopback.
func pair(t *testing.T) (a, b *Namespace) {
	t.Helper()
	var nodes [2]*Node
	var spaces [2]*Namespace
	log := slog.New(slog.DiscardHandler)
	for i := range nodes {
		ns, err := NewNamespace(true)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Close() })
		n, err := Listen(ns, 0, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		nodes[i], spaces[i] = n, ns
	}
	for i, n := range nodes {
		other := nodes[1-i]
		err := n.Configure(Config{
			Address: netip.MustParsePrefix([]string{"10.99.0.1/24", "10.99.0.2/24"}[i]),
			Peers: []Peer{{
				PublicKey: other.PublicKey,
				Endpoint:  netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), other.Port),
				Address:   netip.MustParseAddr([]string{"10.99.0.2", "10.99.0.1"}[i]),
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return spaces[0], spaces[1]
}

// TestMesh sends a canary from one namespace to the other over the mesh, and sees that the
// packets that carry it across the host's loopback do not hold it.
func TestMesh(t *testing.T) {
	needNet(t)
	a, b := pair(t)
	var ln net.Listener
	in(t, b.File(), func() {
		var err error
		if ln, err = net.Listen("tcp", "10.99.0.2:7000"); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	canary := make([]byte, 16)
	rand.Read(canary)
	canaryHex := []byte(hex.EncodeToString(canary))
	payload := bytes.Repeat(canaryHex, 20000) // 640 kB, many segments
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	capture, err := capture.Start("lo", canaryHex)
	if err != nil {
		t.Fatal(err)
	}
	in(t, a.File(), func() {
		c, err := net.DialTimeout("tcp", "10.99.0.2:7000", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
	select {
	case b := <-got:
		if !bytes.Equal(b, payload) {
			t.Fatalf("received %d bytes, want the %d sent", len(b), len(payload))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("nothing received over the mesh")
	}
	seen := capture.Stop()
	if seen.UDP == 0 {
		t.Fatal("the capture saw no WireGuard packet on the host's loopback")
	}
	if seen.Found {
		t.Fatal("a packet on the host's loopback holds the canary in plaintext")
	}
	t.Logf("%d UDP packets, %d bytes captured, no canary", seen.UDP, seen.Bytes)
}

// TestIsolated checks that a workload's namespace reaches nothing outside its mesh: not the
// host's loopback, not another address, and in mode none nothing but its own loopback.
func TestIsolated(t *testing.T) {
	needNet(t)
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	a, _ := pair(t)
	none, err := NewNamespace(false)
	if err != nil {
		t.Fatal(err)
	}
	defer none.Close()
	for name, ns := range map[string]*Namespace{"mesh": a, "none": none} {
		in(t, ns.File(), func() {
			for _, addr := range []string{host.Addr().String(), "192.0.2.1:80", "10.99.1.1:80"} {
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err == nil {
					c.Close()
					t.Errorf("%s: connected to %s", name, addr)
				} else if name == "mesh" && addr != host.Addr().String() && !errors.Is(err, syscall.ENETUNREACH) {
					t.Errorf("%s: dial %s: %v, want ENETUNREACH", name, addr, err)
				}
			}
			// Its own loopback works.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Errorf("%s: loopback: %v", name, err)
			} else {
				c.Close()
			}
		})
	}
}

// TestMTU checks that the mesh's MTU is the path's to the peers less Overhead, within
// Config.MTULimit, so that a network of jumbo frames carries the mesh's large packets whole:
// and that those packets, like the small ones, hold no plaintext where the host sees them.
func TestMTU(t *testing.T) {
	needNet(t)
	for _, c := range []struct {
		path, limit, want int
		err               string
	}{
		{path: 1500, want: 1420},
		{path: 9000, want: 8920},
		{path: 65535, want: MaxMTU},
		{path: 9000, limit: 4000, want: 4000},
		{path: 600, err: "has an MTU of 600: the mesh needs 656 at least"},
		{path: 9000, limit: 100, err: "MTU limit 100 is not between 576 and 65455"},
	} {
		t.Run(fmt.Sprintf("path=%d,limit=%d", c.path, c.limit), func(t *testing.T) {
			h := hosts(t, c.path)
			if c.err != "" {
				err := meshConfigure(t, h, c.limit)
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %v, want an error with %q", err, c.err)
				}
				return
			}
			a, b := meshOver(t, h, c.limit)
			for _, ns := range []*Namespace{a, b} {
				in(t, ns.File(), func() {
					ifi, err := net.InterfaceByName(Interface)
					if err != nil {
						t.Fatal(err)
					}
					if ifi.MTU != c.want {
						t.Errorf("the mesh's MTU is %d over a path of %d, limit %d: want %d", ifi.MTU, c.path, c.limit, c.want)
					}
				})
			}
			// Packets of the mesh's MTU cross whole, and hold no plaintext on the veth.
			canary := []byte(fmt.Sprintf("canary-%x", time.Now().UnixNano()))
			var seen *capture.Capture
			var err error
			in(t, h[0].file, func() { seen, err = capture.Start("v", canary) })
			if err != nil {
				t.Fatal(err)
			}
			conn, srv := connected(t, a.File(), b.File(), "10.99.0.2:7003")
			payload := bytes.Repeat(canary, 100000)
			send := [2][]byte{payload, payload}
			recv := [2][]byte{make([]byte, len(payload)), make([]byte, len(payload))}
			if err := exchange(conn, srv, send, recv); err != nil {
				t.Fatal(err)
			}
			r := seen.Stop()
			if !bytes.Equal(recv[0], payload) || !bytes.Equal(recv[1], payload) {
				t.Fatal("the mesh garbled the payload")
			}
			if r.UDP == 0 || r.Found {
				t.Fatalf("capture on the veth: %+v: want WireGuard's packets, and no plaintext", r)
			}
			// With UDP GSO, WireGuard hands the kernel its packets in batches that cross the
			// veth as one: larger on average than the path's MTU.
			avg := r.Bytes / int64(r.UDP)
			if c.path == 1500 && avg <= int64(c.path) {
				t.Errorf("WireGuard's UDP packets on the veth are of %d bytes on average: UDP GSO is off", avg)
			}
			t.Logf("%d UDP packets on the veth, %d bytes on average", r.UDP, avg)
		})
	}
}

// meshConfigure configures a node listening on h[0]'s veth with a peer on h[1]'s, with
// Config.MTULimit limit, and returns Configure's error.
func meshConfigure(t *testing.T, h [2]host, limit int) error {
	ns, err := NewNamespace(true)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	in(t, h[0].file, func() {
		var n *Node
		if n, err = Listen(ns, 0, slog.New(slog.DiscardHandler)); err != nil {
			return
		}
		defer n.Close()
		err = n.Configure(Config{
			MTULimit: limit,
			Address:  netip.MustParsePrefix("10.99.0.1/24"),
			Peers:    []Peer{{Endpoint: netip.MustParseAddrPort("10.98.0.2:51820"), Address: netip.MustParseAddr("10.99.0.2")}},
		})
	})
	return err
}

// TestOffloads checks that the TUN device hands WireGuard the kernel's TSO segments and takes
// coalesced ones back (IFF_VNET_HDR, TUNSETOFFLOAD), wireguard-go's fast path: without them
// it reads and writes one packet at a time.
func TestOffloads(t *testing.T) {
	needNet(t)
	ns, err := NewNamespace(true)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	n, err := Listen(ns, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if got := n.tun.BatchSize(); got != conn.IdealBatchSize {
		t.Fatalf("the TUN device's batch size is %d, want %d: its offloads are off", got, conn.IdealBatchSize)
	}
}

// TestHandshake configures two nodes at the same moment, as the provisioning server's answer
// does, and wants them connected well within WireGuard's 5 s retry: two handshakes that the
// nodes start at once cross, both fail, and their retries, in step, can keep failing.
func TestHandshake(t *testing.T) {
	needNet(t)
	h := hosts(t, 1500)
	for round := range 5 {
		a, b := meshOver(t, h, 0)
		var ln net.Listener
		var err error
		in(t, b.File(), func() { ln, err = net.Listen("tcp", "10.99.0.2:7004") })
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		in(t, a.File(), func() {
			var c net.Conn
			if c, err = net.DialTimeout("tcp", "10.99.0.2:7004", 3*time.Second); err == nil {
				c.Close()
			}
		})
		ln.Close()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		t.Logf("round %d: connected in %v", round, time.Since(t0).Round(time.Millisecond))
	}
}
