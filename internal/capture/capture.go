// Package capture is for tests only: it captures the packets of a network interface, as a host
// that watches its network would (an AF_PACKET socket), and tells whether any held a pattern.
package capture

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Result is what a capture saw.
type Result struct {
	Packets, UDP int   // the packets, and those of them over IPv4 UDP
	Bytes        int64 // their size, link-layer headers included
	Found        bool  // a packet held the pattern
}

// Capture captures packets until Stop.
type Capture struct {
	fd     int
	stop   chan struct{}
	result chan Result
}

// Start captures the packets that cross the interface name of the calling thread's network
// namespace, both ways, looking for pattern in each. It needs CAP_NET_RAW.
func Start(name string, pattern []byte) (*Capture, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	all := htons(unix.ETH_P_ALL)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(all))
	if err != nil {
		return nil, fmt.Errorf("capture on %s: %w", name, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: all, Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("capture on %s: %w", name, err)
	}
	// A timeout, so that Stop is seen on an idle link.
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
	c := &Capture{fd: fd, stop: make(chan struct{}), result: make(chan Result)}
	go c.run(pattern)
	return c, nil
}

// run reads packets until Stop.
func (c *Capture) run(pattern []byte) {
	var r Result
	buf := make([]byte, 1<<18)
	defer func() {
		unix.Close(c.fd)
		c.result <- r
	}()
	flags := unix.MSG_TRUNC
	for {
		select {
		case <-c.stop:
			// What is queued still counts: read it without waiting.
			flags |= unix.MSG_DONTWAIT
		default:
		}
		n, _, err := unix.Recvfrom(c.fd, buf, flags)
		if errors.Is(err, syscall.EAGAIN) && flags&unix.MSG_DONTWAIT != 0 {
			return
		}
		// ENETDOWN: the interface was down when the capture started; it goes on once it is up.
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.ENETDOWN) {
			continue
		}
		if err != nil {
			return
		}
		n = min(n, len(buf))
		r.Packets++
		r.Bytes += int64(n)
		// Ethernet (loopback and veth have its 14-byte header), IPv4, protocol UDP.
		if n > 14+20 && buf[12] == 0x08 && buf[13] == 0x00 && buf[14+9] == unix.IPPROTO_UDP {
			r.UDP++
		}
		if bytes.Contains(buf[:n], pattern) {
			r.Found = true
		}
	}
}

// Stop ends the capture and returns what it saw.
func (c *Capture) Stop() Result {
	close(c.stop)
	return <-c.result
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
