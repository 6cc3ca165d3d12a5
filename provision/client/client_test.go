package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ppml/ppml/attest/sim"
	"github.com/ppml/ppml/provision"
	"github.com/ppml/ppml/provision/client"
	"github.com/ppml/ppml/ratls"
)

// TestCertificateCurves: the client's RA-TLS key is P-384 with Gramine's protocol, whose
// verifier accepts P-256 only from Gramine v1.8, and P-256 with ppml's. A listener that records
// the key of each client certificate and hangs up stands for the servers.
func TestCertificateCurves(t *testing.T) {
	dir := t.TempDir()
	if err := provision.Setup(dir, []string{"localhost"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, provision.SetupServerCert), filepath.Join(dir, provision.SetupServerKey))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, provision.SetupCACert))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ratls.ServerConfig(cert))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	curves := make(chan string, 4)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			tc := conn.(*tls.Conn)
			if tc.Handshake() == nil {
				curves <- tc.ConnectionState().PeerCertificates[0].PublicKey.(*ecdsa.PublicKey).Curve.Params().Name
			}
			conn.Close()
		}
	}()
	plat, err := sim.Init(filepath.Join(t.TempDir(), "sim"), "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	c := &client.Client{Servers: []string{"localhost:" + port}, Roots: roots, Attester: sim.Attester{Platform: plat}, Tries: 1}
	for _, tc := range []struct {
		protocol string
		fetch    func() error
		want     string
	}{
		{"Gramine's", func() error { _, err := c.FetchGramine(context.Background()); return err }, "P-384"},
		{"ppml's", func() error { _, err := c.Fetch(context.Background(), "default"); return err }, "P-256"},
		{"Gramine's again", func() error { _, err := c.FetchGramine(context.Background()); return err }, "P-384"},
	} {
		if err := tc.fetch(); err == nil {
			t.Fatalf("%s protocol: a server that hangs up answered", tc.protocol)
		}
		if got := <-curves; got != tc.want {
			t.Errorf("%s protocol: the client's key is %s, want %s", tc.protocol, got, tc.want)
		}
	}
}
