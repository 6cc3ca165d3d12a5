package mesh

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// host is a named network namespace that plays a machine of the job: the launcher's network.
type host struct {
	name string
	file *os.File
}

// ip runs the ip command.
func ip(tb testing.TB, args ...string) {
	tb.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		tb.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// hosts makes two named namespaces joined by a veth pair of MTU mtu, at 10.98.0.1/24 and
// 10.98.0.2/24 on it, as two machines on one network.
func hosts(tb testing.TB, mtu int) [2]host {
	tb.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("needs the ip command (iproute2)")
	}
	var h [2]host
	for i := range h {
		h[i].name = fmt.Sprintf("ppmlmesh%d-%d-%d", os.Getpid(), mtu, i)
		ip(tb, "netns", "add", h[i].name)
		name := h[i].name
		tb.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
		var err error
		if h[i].file, err = os.Open("/run/netns/" + h[i].name); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { h[i].file.Close() })
	}
	ip(tb, "-n", h[0].name, "link", "add", "v", "mtu", fmt.Sprint(mtu), "type", "veth", "peer", "name", "v", "netns", h[1].name, "mtu", fmt.Sprint(mtu))
	for i := range h {
		ip(tb, "-n", h[i].name, "addr", "add", fmt.Sprintf("10.98.0.%d/24", i+1), "dev", "v")
		ip(tb, "-n", h[i].name, "link", "set", "v", "up")
		ip(tb, "-n", h[i].name, "link", "set", "lo", "up")
	}
	return h
}

// meshOver makes a workload namespace for each host, joined by the mesh 10.99.0.0/24 whose
// WireGuard devices listen on the hosts' veth, configured at the same moment with
// Config.MTULimit limit.
func meshOver(tb testing.TB, h [2]host, limit int) (a, b *Namespace) {
	tb.Helper()
	var nodes [2]*Node
	var spaces [2]*Namespace
	for i := range nodes {
		ns, err := NewNamespace(true)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { ns.Close() })
		in(tb, h[i].file, func() {
			nodes[i], err = Listen(ns, 0, slog.New(slog.DiscardHandler))
		})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(nodes[i].Close)
		spaces[i] = ns
	}
	// Both at once, as the provisioning server's answer reaches the nodes.
	start := make(chan struct{})
	errs := make(chan error, 2)
	for i, n := range nodes {
		other := nodes[1-i]
		go func() {
			runtime.LockOSThread() // the thread ends with the goroutine, in h[i]
			if err := unix.Setns(int(h[i].file.Fd()), unix.CLONE_NEWNET); err != nil {
				errs <- err
				return
			}
			<-start
			errs <- n.Configure(Config{
				MTULimit: limit,
				Address:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, 0, byte(i + 1)}), 24),
				Peers: []Peer{{
					PublicKey: other.PublicKey,
					Endpoint:  netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 98, 0, byte(2 - i)}), other.Port),
					Address:   netip.AddrFrom4([4]byte{10, 99, 0, byte(2 - i)}),
				}},
			})
		}()
	}
	close(start)
	for range 2 {
		if err := <-errs; err != nil {
			tb.Fatal(err)
		}
	}
	return spaces[0], spaces[1]
}

// connected returns the two ends of a TCP connection from namespace a to addr in namespace b.
func connected(tb testing.TB, a, b *os.File, addr string) (net.Conn, net.Conn) {
	tb.Helper()
	var ln net.Listener
	var err error
	in(tb, b, func() { ln, err = net.Listen("tcp", addr) })
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	var c net.Conn
	in(tb, a, func() { c, err = net.Dial("tcp", addr) })
	if err != nil {
		tb.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// exchange sends send[0] from c to s and send[1] back at once, as the two nodes of a ring
// all-reduce do, into recv.
func exchange(c, s net.Conn, send, recv [2][]byte) error {
	errs := make(chan error, 4)
	for i, conn := range []net.Conn{c, s} {
		go func() { _, err := conn.Write(send[i]); errs <- err }()
		go func() { _, err := io.ReadFull(conn, recv[1-i]); errs <- err }()
	}
	var first error
	for range 4 {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// cpuTime is the CPU time that this process has spent, in user and system mode.
func cpuTime(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkExchange measures the bandwidth of a TCP connection that carries 16 MiB each way
// at once, as the two nodes of a gloo all-reduce of 16 MiB do, between two namespaces joined by
// a plain veth of each MTU, and between two workload namespaces over the mesh whose WireGuard
// packets cross that veth. MB/s is bytes of one direction per second, as
// examples/distributed/allreduce.py counts bytes reduced; cpu-ms/op is the CPU time (user and
// system) that this process, both nodes' WireGuard and TCP included, spent on an exchange.
func BenchmarkExchange(b *testing.B) {
	needNet(b)
	const size = 16 << 20
	send := [2][]byte{make([]byte, size), make([]byte, size)}
	recv := [2][]byte{make([]byte, size), make([]byte, size)}
	for _, mtu := range []int{1500, 9000, 65535} {
		h := hosts(b, mtu)
		run := func(name string, a, s *os.File, addr string) {
			b.Run(fmt.Sprintf("%s/mtu=%d", name, mtu), func(b *testing.B) {
				c, srv := connected(b, a, s, addr)
				b.SetBytes(size)
				start := cpuTime(b)
				for b.Loop() {
					if err := exchange(c, srv, send, recv); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(cpuTime(b)-start)/1e6/float64(b.N), "cpu-ms/op")
			})
		}
		run("veth", h[0].file, h[1].file, "10.98.0.2:7002")
		m0, m1 := meshOver(b, h, 0)
		run("mesh", m0.File(), m1.File(), "10.99.0.2:7002")
	}
}
