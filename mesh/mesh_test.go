package mesh

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ppml/ppml/internal/capture"
)

// needNet skips the tests that make network namespaces where they cannot.
func needNet(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("needs /dev/net/tun")
	}
}

// in runs f on a thread in the network namespace ns: the sockets it makes are ns's.
func in(t *testing.T, ns *Namespace, f func()) {
	t.Helper()
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // the thread ends with the goroutine, in ns
		if err := unix.Setns(int(ns.File().Fd()), unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		f()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

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
	in(t, b, func() {
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
	in(t, a, func() {
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
		in(t, ns, func() {
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
