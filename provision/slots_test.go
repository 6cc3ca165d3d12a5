package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ppml/ppml/attest/sim"
	"github.com/ppml/ppml/provision/wire"
	"github.com/ppml/ppml/store"
)

// restart replaces the testbed's server with one of the same configuration whose metrics go to
// a registry of its own, which it returns. change, if not nil, changes the new server before it
// serves on ln (nil: a new loopback port).
func (tb *testbed) restart(t *testing.T, ln net.Listener, change func(*Server)) *prometheus.Registry {
	t.Helper()
	tb.server.Shutdown(context.Background())
	reg := prometheus.NewRegistry()
	srv, err := NewServer(tb.server.state.Load().cfg, tb.store, nil, NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(srv)
	}
	if ln == nil {
		tb.serve(t, srv)
		return reg
	}
	go srv.Serve(ln)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	tb.server, tb.addr = srv, "localhost:"+port
	return reg
}

// metric is the sum of the values of the metric name in reg, over its labels.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return v
}

// waitMetric waits up to 5 seconds for the metric name in reg to reach want.
func waitMetric(t *testing.T, reg *prometheus.Registry, name string, want float64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); metric(t, reg, name) != want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, metric(t, reg, name), want)
		}
	}
}

// dialFrom opens n TCP connections to addr from the loopback address local (127.0.0.2: another
// peer than the test's clients), which send nothing.
func dialFrom(t *testing.T, local, addr string, n int) []net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns
}

// closedAfter waits, for each connection, until the server closes it or within has passed
// since dialed, and returns how long each stayed open: within or more if the server did not
// close it.
func closedAfter(conns []net.Conn, dialed time.Time, within time.Duration) []time.Duration {
	open := make([]time.Duration, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(dialed.Add(within))
			_, err := c.Read(make([]byte, 1))
			open[i] = time.Since(dialed)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				open[i] = max(open[i], within)
			}
		})
	}
	wg.Wait()
	return open
}

// TestIdleConnectionsQueue: connections that send nothing and hold every slot keep an attested
// client waiting only until first_byte_timeout closes them: the client's connection waits to
// be accepted, and is not closed because the server is full.
func TestIdleConnectionsQueue(t *testing.T) {
	tb := newTestbed(t, "max_connections = 8\n"+byEnclave)
	reg := tb.restart(t, nil, nil)
	firstByte := tb.server.state.Load().cfg.FirstByteTimeout.Duration
	dialed := time.Now()
	idle := dialFrom(t, "127.0.0.2", tb.addr, 8)
	waitMetric(t, reg, "ppml_provision_connections_active", 8)
	closed := make(chan []time.Duration, 1)
	go func() { closed <- closedAfter(idle, dialed, 3*firstByte) }()

	start := time.Now()
	_, err := tb.client(sim.Attester{Platform: tb.plat, Enclave: tb.enclave}).Fetch(context.Background(), "default")
	if err != nil {
		t.Fatalf("the idle connections kept the client out: %v", err)
	}
	if d := time.Since(start); d > firstByte+2*time.Second {
		t.Errorf("the client got its key after %v, first_byte_timeout is %v", d, firstByte)
	}
	for i, d := range <-closed {
		if d < firstByte*3/4 || d > firstByte+2*time.Second {
			t.Errorf("idle connection %d stayed open %v, first_byte_timeout is %v", i, d, firstByte)
		}
	}
	waitMetric(t, reg, "ppml_provision_handshake_failures_total", 8)
	waitMetric(t, reg, "ppml_provision_connections_active", 0)
}

// TestShutdownWhileFull: Serve, waiting for a slot to accept the next connection, returns as
// soon as Shutdown is called.
func TestShutdownWhileFull(t *testing.T) {
	tb := newTestbed(t, "max_connections = 1\nfirst_byte_timeout = \"1m\"\n"+byEnclave)
	tb.server.Shutdown(context.Background())
	srv, err := NewServer(tb.server.state.Load().cfg, tb.store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	served := tb.serve(t, srv)
	_, port, _ := net.SplitHostPort(tb.addr)
	conns := dialFrom(t, "127.0.0.1", net.JoinHostPort("127.0.0.1", port), 2) // one served, one waiting in the backlog
	for deadline := time.Now().Add(5 * time.Second); inProgress(srv) < 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server did not take the connection")
		}
	}
	time.Sleep(50 * time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Serve still waited for a slot after Shutdown")
	}
	for _, c := range conns {
		c.Close() // Shutdown need not wait for its bound
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestPerPeerLimit: the attack of the issue, more idle connections from one address than the
// server has slots, holds only max_connections_per_peer (32 by default) of them: the others
// are closed at once and counted, and an attested client from another address is served at
// once, without waiting for first_byte_timeout.
func TestPerPeerLimit(t *testing.T) {
	tb := newTestbed(t, byEnclave)
	reg := tb.restart(t, nil, nil)
	const perPeer, idle = 32, 300 // more than max_connections, 256
	dialed := time.Now()
	conns := dialFrom(t, "127.0.0.2", tb.addr, idle)
	closed := make(chan []time.Duration, 1)
	go func() { closed <- closedAfter(conns, dialed, time.Second) }()

	start := time.Now()
	if _, err := tb.client(sim.Attester{Platform: tb.plat, Enclave: tb.enclave}).Fetch(context.Background(), "default"); err != nil {
		t.Fatalf("the idle connections kept the client out: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the client got its key after %v", d)
	}
	open := 0
	for _, d := range <-closed {
		if d >= time.Second {
			open++
		}
	}
	if open != perPeer {
		t.Errorf("%d of %d idle connections from one address held, want %d", open, idle, perPeer)
	}
	if n := metric(t, reg, "ppml_provision_connections_rejected_total"); n != idle-perPeer {
		t.Errorf("ppml_provision_connections_rejected_total = %v, want %d", n, idle-perPeer)
	}
}

// summaryCount matches a summary of handshake failures and gives its count.
var summaryCount = regexp.MustCompile(`^(\d+) more TLS handshake failures? from (\S+) since `)

// handshakeFailures returns the audit records from seen on, and the handshake failures they
// count: a summary counts its number, another record of a failed handshake one.
func handshakeFailures(t *testing.T, tb *testbed, seen int) ([]store.AuditRecord, int) {
	t.Helper()
	recs, n := tb.audit(t)[seen:], 0
	for _, r := range recs {
		m := summaryCount.FindStringSubmatch(r.Reason)
		failed := m != nil || strings.HasPrefix(r.Reason, "TLS handshake: ")
		if r.Peer == "" || r.Time.IsZero() || failed && r.Decision != store.Deny {
			t.Errorf("audit record %+v", r)
		}
		switch {
		case m != nil:
			if m[2] != r.Peer {
				t.Errorf("summary of %s's failures names peer %q", m[2], r.Peer)
			}
			c, _ := strconv.Atoi(m[1])
			n += c
		case failed:
			n++
		}
	}
	return recs, n
}

// sendGarbage opens n connections from the test's address that send bytes that are not TLS,
// and waits for the server to close each.
func sendGarbage(t *testing.T, addr string, n int) {
	t.Helper()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c)
		c.Close()
	}
}

// TestHandshakeFailuresSummarized: garbage from one address makes at most two audit records
// (the first failure, and a summary of those that follow, which Shutdown writes), all counted
// in the metric; connections whose handshake succeeds keep their own records.
func TestHandshakeFailuresSummarized(t *testing.T) {
	tb := newTestbed(t, byEnclave)
	reg := tb.restart(t, nil, nil)
	seen := len(tb.audit(t))
	const garbage = 50
	sendGarbage(t, tb.addr, garbage)
	waitMetric(t, reg, "ppml_provision_handshake_failures_total", garbage)
	if recs, _ := handshakeFailures(t, tb, seen); len(recs) > 1 {
		t.Errorf("%d audit records for %d garbage connections before the interval ended", len(recs), garbage)
	}
	// An attested client is audited as before: its own record, at once.
	c := tb.client(sim.Attester{Platform: tb.plat, Enclave: tb.enclave})
	for _, keys := range [][]string{{"default"}, {"other"}} {
		before := len(tb.audit(t))
		_, err := c.Fetch(context.Background(), keys...)
		rec := tb.lastAudit(t, before)
		if keys[0] == "other" && (!errors.Is(err, wire.ErrRefused) || rec.Decision != store.Deny || !strings.Contains(rec.Reason, `may not have key "other"`)) ||
			keys[0] == "default" && (err != nil || rec.Decision != store.Allow) {
			t.Errorf("keys %q: err %v, audit %+v", keys, err, rec)
		}
	}

	if err := tb.server.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs, n := handshakeFailures(t, tb, seen)
	if n != garbage || len(recs) != 4 {
		t.Fatalf("after Shutdown, %d audit records count %d handshake failures, want 2 for %d (and the 2 clients'):\n%+v", len(recs), n, garbage, recs)
	}
	first, summary := recs[0], recs[3]
	if !strings.HasPrefix(first.Peer, "127.0.0.1:") || !strings.Contains(first.Reason, "does not look like a TLS handshake") {
		t.Errorf("first failure: %+v", first)
	}
	if summary.Peer != "127.0.0.1" || !strings.HasPrefix(summary.Reason, fmt.Sprintf("%d more TLS handshake failures from 127.0.0.1 since ", garbage-1)) ||
		!strings.Contains(summary.Reason, "does not look like a TLS handshake") {
		t.Errorf("summary: %+v", summary)
	}
}

// TestHandshakeFailureInterval: the summary of an address's failures is written when its
// interval ends, without Shutdown, and the failure that follows starts a new interval.
func TestHandshakeFailureInterval(t *testing.T) {
	tb := newTestbed(t, byEnclave)
	const interval = 300 * time.Millisecond
	tb.restart(t, nil, func(s *Server) { s.failures.interval = interval })
	seen := len(tb.audit(t))
	start := time.Now()
	sendGarbage(t, tb.addr, 5)
	if recs, n := handshakeFailures(t, tb, seen); len(recs) != 1 || n != 1 {
		t.Fatalf("%d audit records count %d failures during the interval, want the first: %+v", len(recs), n, recs)
	}
	tb.lastAudit(t, seen+1)
	if d := time.Since(start); d < interval {
		t.Errorf("the summary was written after %v, before the interval of %v ended", d, interval)
	}
	if recs, n := handshakeFailures(t, tb, seen); len(recs) != 2 || n != 5 || !strings.HasPrefix(recs[1].Reason, "4 more TLS handshake failures from 127.0.0.1 since ") {
		t.Fatalf("%d audit records count %d failures after the interval, want 2 counting 5: %+v", len(recs), n, recs)
	}
	sendGarbage(t, tb.addr, 1)
	if recs, n := handshakeFailures(t, tb, seen); len(recs) != 3 || n != 6 || !strings.HasPrefix(recs[2].Reason, handshakeReason) {
		t.Errorf("the first failure of a new interval: %+v", recs)
	}
}

// TestEmptyConnections: connections closed before sending anything (port probes) are counted,
// and not audited.
func TestEmptyConnections(t *testing.T) {
	tb := newTestbed(t, byEnclave)
	reg := tb.restart(t, nil, nil)
	seen := len(tb.audit(t))
	for range 5 {
		c, err := net.Dial("tcp", tb.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	waitMetric(t, reg, "ppml_provision_connections_empty_total", 5)
	tb.server.Shutdown(context.Background())
	if recs := tb.audit(t)[seen:]; len(recs) != 0 {
		t.Errorf("port probes audited: %+v", recs)
	}
	if n := metric(t, reg, "ppml_provision_handshake_failures_total"); n != 0 {
		t.Errorf("port probes counted as %v handshake failures", n)
	}
}
