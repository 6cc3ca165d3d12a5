package provision

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ppml/ppml/attest/sim"
	"github.com/ppml/ppml/provision/wire"
)

// acceptCounter counts the connections its listener accepts, and closes the first drop of
// them at once, as a server over its limits does.
type acceptCounter struct {
	net.Listener
	drop     int32
	accepted atomic.Int32
}

func (l *acceptCounter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.accepted.Add(1) > l.drop {
			return c, nil
		}
		c.Close()
	}
}

// closeAll listens on a loopback port and closes every connection at once.
func closeAll(t *testing.T) *acceptCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	counter := &acceptCounter{Listener: ln, drop: 1 << 30}
	go counter.Accept()
	return counter
}

// countAccepts serves the testbed on a listener that counts the connections, dropping the
// first drop of them.
func (tb *testbed) countAccepts(t *testing.T, drop int32) *acceptCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	counter := &acceptCounter{Listener: ln, drop: drop}
	tb.restart(t, counter, nil)
	return counter
}

// TestClientRetries: a client tries a server that is not up yet, or that closes its first
// connections, again, and gets its key; a refusal is not retried.
func TestClientRetries(t *testing.T) {
	tb := newTestbed(t, byEnclave)
	a := sim.Attester{Platform: tb.plat, Enclave: tb.enclave}

	t.Run("server up after 300ms", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c := tb.client(a)
		up := make(chan struct{})
		go func() {
			defer close(up)
			time.Sleep(300 * time.Millisecond)
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			tb.restart(t, ln, nil)
		}()
		_, port, _ := net.SplitHostPort(addr)
		c.Servers = []string{"localhost:" + port}
		_, err = c.Fetch(context.Background(), "default")
		<-up
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("connections closed during the handshake", func(t *testing.T) {
		counter := tb.countAccepts(t, 2)
		if _, err := tb.client(a).Fetch(context.Background(), "default"); err != nil {
			t.Fatal(err)
		}
		if n := counter.accepted.Load(); n != 3 {
			t.Errorf("%d connections, want 3", n)
		}
	})

	t.Run("a server that closes every connection, then a good one", func(t *testing.T) {
		good := tb.countAccepts(t, 0)
		closer := closeAll(t)
		c := tb.client(a)
		c.Servers = []string{closer.Addr().String(), tb.addr}
		c.Tries, c.Backoff = 2, 10*time.Millisecond
		if _, err := c.Fetch(context.Background(), "default"); err != nil {
			t.Fatal(err)
		}
		if n, m := closer.accepted.Load(), good.accepted.Load(); n != 2 || m != 1 {
			t.Errorf("%d tries of the first server, %d of the second; want 2 and 1", n, m)
		}
	})

	t.Run("no retry after the per-server timeout", func(t *testing.T) {
		good := tb.countAccepts(t, 0)
		closer := closeAll(t)
		c := tb.client(a)
		c.Servers = []string{closer.Addr().String(), tb.addr}
		c.Timeout, c.Backoff = 300*time.Millisecond, time.Second
		start := time.Now()
		if _, err := c.Fetch(context.Background(), "default"); err != nil {
			t.Fatal(err)
		}
		if n, d := closer.accepted.Load(), time.Since(start); n != 1 || d > time.Second {
			t.Errorf("%d tries of the first server, the second reached after %v", n, d)
		}
		if m := good.accepted.Load(); m != 1 {
			t.Errorf("%d tries of the second server", m)
		}
	})

	t.Run("caller's context", func(t *testing.T) {
		good := tb.countAccepts(t, 0)
		closer := closeAll(t)
		c := tb.client(a)
		c.Servers = []string{closer.Addr().String(), tb.addr}
		c.Backoff = 2 * time.Second // within the per-server Timeout, 10s
		// Cancelled, not a deadline: the backoff fits in the per-server timeout.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		time.AfterFunc(200*time.Millisecond, cancel)
		start := time.Now()
		_, err := c.Fetch(ctx, "default")
		if err == nil {
			t.Fatal("a key after the caller's context ended")
		}
		if strings.Contains(err.Error(), tb.addr) {
			t.Errorf("err = %v names the next server, which was not tried", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Fetch returned %v after it began, its context ended after 200ms", d)
		}
		if m := good.accepted.Load(); m != 0 {
			t.Errorf("the next server was tried after the caller's context ended")
		}
	})

	t.Run("server certificate that does not verify", func(t *testing.T) {
		counter := tb.countAccepts(t, 0)
		c := tb.client(a)
		c.Roots = x509.NewCertPool()
		if _, err := c.Fetch(context.Background(), "default"); err == nil || !strings.Contains(err.Error(), "server certificate") {
			t.Fatalf("err = %v, want the server's certificate refused", err)
		}
		if n := counter.accepted.Load(); n != 1 {
			t.Errorf("%d tries of a server whose certificate does not verify", n)
		}
	})

	t.Run("refusal", func(t *testing.T) {
		counter := tb.countAccepts(t, 0)
		e := tb.enclave
		e.MREnclave[0] ^= 1
		c := tb.client(sim.Attester{Platform: tb.plat, Enclave: e})
		if _, err := c.Fetch(context.Background(), "default"); !errors.Is(err, wire.ErrRefused) {
			t.Fatalf("err = %v, want a refusal", err)
		}
		// Gramine's protocol refuses by closing the connection after the handshake.
		if _, err := c.FetchGramine(context.Background()); err == nil {
			t.Fatal("Gramine's protocol: granted")
		}
		if n := counter.accepted.Load(); n != 2 {
			t.Errorf("the server saw %d connections for two refused requests", n)
		}
	})
}
