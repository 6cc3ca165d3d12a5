package provision

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ppml/ppml/attest/sim"
	"github.com/ppml/ppml/ratls"
	"github.com/ppml/ppml/store"
)

// dialAttested opens a TLS connection with a valid RA-TLS certificate, to speak raw bytes.
func (tb *testbed) dialAttested(t *testing.T) *tls.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", tb.addr, tb.attestedConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// attestedConfig is the TLS configuration of a client with a valid RA-TLS certificate.
func (tb *testbed) attestedConfig(t *testing.T) *tls.Config {
	t.Helper()
	cert, err := ratls.NewCertificate(sim.Attester{Platform: tb.plat, Enclave: tb.enclave})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ratls.ClientConfig(cert, tb.roots, tb.addr)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// keysRequest starts a request of ppml's protocol (docs/provisioning.md).
const keysRequest = "PPML_PROVISION_KEYS_REQUEST_V1\x00\x00\x00\x00\x00"

// TestMisbehavingClients: malformed and oversized requests, a client that sends nothing and
// clients that hang up neither crash the server nor leak goroutines, and each is audited.
func TestMisbehavingClients(t *testing.T) {
	tb := newTestbed(t, byEnclave)
	cfg := tb.server.state.Load().cfg
	cfg.RequestTimeout.Duration = 300 * time.Millisecond
	if err := tb.server.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	for _, tc := range []struct {
		name, send, reason string
	}{
		{"malformed", "GET / HTTP/1.1\r\nHost: x\r\n\r\n" + strings.Repeat("x", 40), "not a provisioning request"},
		{"too many keys", keysRequest + "\xff", "request for 255 keys"},
		{"cut short", keysRequest + "\x02\x07default", "read key name"},
		{"silent", "", "request: read request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := len(tb.audit(t))
			conn := tb.dialAttested(t)
			conn.Write([]byte(tc.send))
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _ := conn.Read(make([]byte, 64))
			conn.Close()
			if n != 0 {
				t.Errorf("the server answered %d bytes", n)
			}
			if rec := tb.lastAudit(t, seen); rec.Decision != store.Deny || !strings.Contains(rec.Reason, tc.reason) {
				t.Errorf("audit: %s %q", rec.Decision, rec.Reason)
			}
		})
	}
	// Hang-ups during the handshake and right after it. They come faster than the server
	// verifies the evidence, so some may be over max_connections_per_peer, and closed at once.
	attested := tb.attestedConfig(t)
	for range 20 {
		if c, err := net.Dial("tcp", tb.addr); err == nil {
			c.Write([]byte{0x16, 0x03, 0x01})
			c.Close()
		}
		if c, err := tls.Dial("tcp", tb.addr, attested); err == nil {
			c.Close()
		}
	}
	// The server still serves.
	if _, err := tb.client(sim.Attester{Platform: tb.plat, Enclave: tb.enclave}).Fetch(context.Background(), "default"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Errorf("%d goroutines after the clients left, %d before", n, before)
	}
}

// TestRestart: a server restarted on the same store gives the same keys and keeps the audit
// log.
func TestRestart(t *testing.T) {
	tb := newTestbed(t, byEnclave)
	c := tb.client(sim.Attester{Platform: tb.plat, Enclave: tb.enclave})
	first, err := c.Fetch(context.Background(), "default")
	if err != nil {
		t.Fatal(err)
	}
	seen := len(tb.audit(t))
	cfg := tb.server.state.Load().cfg
	tb.server.Shutdown(context.Background())
	tb.store.Close()

	mk, err := store.ReadMasterKey(cfg.MasterKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if tb.store, err = store.Open(cfg.Store, mk); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(cfg, tb.store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tb.serve(t, srv)
	c.Servers = []string{tb.addr}
	again, err := c.Fetch(context.Background(), "default")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first[0], again[0]) {
		t.Error("the key changed across the restart")
	}
	if rec := tb.lastAudit(t, seen); rec.Decision != store.Allow {
		t.Errorf("audit after restart: %+v", rec)
	}
	if n := len(tb.audit(t)); n != seen+1 {
		t.Errorf("%d audit records after the restart, want %d", n, seen+1)
	}
}

// TestShutdownBounded: Serve returns as soon as Shutdown is called, and Shutdown waits for a
// client that is stuck (before its handshake, or after it) no longer than its context allows:
// then it closes the connection and returns the context's error. The timeouts of the
// handshake and of the request, far longer, play no part.
func TestShutdownBounded(t *testing.T) {
	tb := newTestbed(t, byEnclave)
	cfg := tb.server.state.Load().cfg
	cfg.HandshakeTimeout.Duration = time.Minute
	cfg.RequestTimeout.Duration = time.Minute
	for _, tc := range []struct {
		name string
		dial func(t *testing.T) net.Conn
	}{
		{"before the handshake", func(t *testing.T) net.Conn {
			c, err := net.Dial("tcp", tb.addr)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}},
		{"after the handshake", func(t *testing.T) net.Conn { return tb.dialAttested(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := NewServer(cfg, tb.store, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			served := tb.serve(t, srv) // the testbed's cleanup ends it, dialAttested dials it
			seen := len(tb.audit(t))
			conn := tc.dial(t)
			defer conn.Close()
			for deadline := time.Now().Add(5 * time.Second); inProgress(srv) == 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the server did not take the connection")
				}
			}

			const bound = 500 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			start := time.Now()
			shut := make(chan error, 1)
			go func() { shut <- srv.Shutdown(ctx) }()
			select {
			case err := <-served:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case err := <-shut:
				t.Fatalf("Shutdown returned (%v) while Serve still waited", err)
			case <-time.After(5 * time.Second):
				t.Fatal("Serve did not return after Shutdown")
			}
			select {
			case err := <-shut:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Shutdown: %v, want %v", err, context.DeadlineExceeded)
				}
				if d := time.Since(start); d < bound || d > bound+2*time.Second {
					t.Errorf("Shutdown returned after %v, bound %v", d, bound)
				}
			case <-time.After(bound + 5*time.Second):
				t.Fatal("Shutdown did not return")
			}

			// The server closed the stuck connection, and its handler ended and audited it.
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("the connection is still open after Shutdown (read: %v)", err)
			}
			// Shutdown waited for it: the record is there when it returns, before the store closes.
			if all := tb.audit(t); len(all) <= seen || all[seen].Decision != store.Deny {
				t.Errorf("no refusal on record when Shutdown returned: %+v", all[seen:])
			}
		})
	}
}

// inProgress is the number of connections that s serves.
func inProgress(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.active)
}

// TestSetupLeavesNothing: Setup refuses a folder that holds one of its files, and a failure
// midway leaves none of the files it had made.
func TestSetupLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(dir+"/"+SetupMasterKey, []byte("mine"), 0o600)
	if err := Setup(dir, []string{"localhost"}, time.Now()); err == nil {
		t.Fatal("Setup replaced an existing master key")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d files left, want only the master key that was there", len(entries))
	}
}

// flakyListener fails its first accepts as a process out of descriptors does.
type flakyListener struct {
	net.Listener
	failures atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.failures.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptRetries: an accept that fails for want of descriptors does not end Serve, which
// goes on serving once they are back; a closed listener still ends it.
func TestAcceptRetries(t *testing.T) {
	tb := newTestbed(t, byEnclave)
	tb.server.Shutdown(context.Background())
	srv, err := NewServer(tb.server.state.Load().cfg, tb.store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	flaky := &flakyListener{Listener: ln}
	flaky.failures.Store(3)
	served := tb.serveOn(srv, flaky)
	if _, err := tb.client(sim.Attester{Platform: tb.plat, Enclave: tb.enclave}).Fetch(context.Background(), "default"); err != nil {
		t.Fatalf("after failed accepts: %v", err)
	}
	if acceptCanRetry(net.ErrClosed) || !acceptCanRetry(&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ENFILE)}) {
		t.Error("acceptCanRetry: closed listener retried, or ENFILE not")
	}
	srv.Shutdown(context.Background())
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
