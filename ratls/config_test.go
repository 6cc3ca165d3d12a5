package ratls

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
)

// testCA issues ordinary server certificates, valid now (the client checks them at the wall
// clock).
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert, key}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// issue makes a server certificate for the common name cn and the DNS names dns (none: no
// subjectAltName extension, like the certificates of Gramine's examples).
func (ca *testCA) issue(t *testing.T, cn string, dns ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// served is how one connection went on the server's side.
type served struct {
	verified bool           // whether VerifyPeer was called: the handshake completed
	resumed  bool           // whether the handshake resumed a session
	claims   *attest.Claims // from VerifyPeer
	verr     error          // from VerifyPeer
	err      error          // from the handshake, VerifyPeer, the policy or the write
}

// verifyAt is when the test servers verify clients: after the simulated platforms are made.
var verifyAt = simTime.Add(time.Minute)

// serveOnce accepts one connection on a loopback listener and serves it with cfg, made by
// ServerConfig, as such a server should: it completes the handshake, verifies the client with VerifyPeer and
// reg, applies policy to the claims, and then writes "secret" to an admitted client, or
// "refused: " and the reason to a refused one. It returns the listener's port and a channel that
// yields how it went.
func serveOnce(t *testing.T, cfg *tls.Config, reg attest.Registry, policy func(*attest.Claims) error) (string, <-chan served) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan served, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- served{err: err}
			return
		}
		tc := tls.Server(c, cfg)
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		var r served
		if r.err = tc.Handshake(); r.err != nil {
			done <- r
			return
		}
		cs := tc.ConnectionState()
		r.verified, r.resumed = true, cs.DidResume
		r.claims, r.verr = VerifyPeer(context.Background(), cs, reg, verifyAt)
		if r.err = r.verr; r.err == nil {
			r.err = policy(r.claims)
		}
		if r.err != nil {
			if _, werr := tc.Write([]byte("refused: " + r.err.Error())); werr != nil {
				r.err = errors.Join(r.err, werr)
			}
		} else {
			_, r.err = tc.Write([]byte("secret"))
		}
		done <- r
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port, done
}

// fetch connects to the loopback port with cfg and reads what the server sends.
func fetch(t *testing.T, port string, cfg *tls.Config) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, cfg)
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(tc)
	return string(b), err
}

func admitAll(*attest.Claims) error { return nil }

func TestServerConfig(t *testing.T) {
	cert := newTestCA(t).issue(t, "localhost", "localhost")
	cfg := ServerConfig(cert)
	if len(cfg.Certificates) != 1 || !bytes.Equal(cfg.Certificates[0].Certificate[0], cert.Certificate[0]) ||
		cfg.ClientAuth != tls.RequireAnyClientCert || cfg.MinVersion != tls.VersionTLS12 || !cfg.SessionTicketsDisabled ||
		cfg.VerifyPeerCertificate != nil || cfg.VerifyConnection != nil {
		t.Errorf("config %+v", cfg)
	}
}

func TestHandshake(t *testing.T) {
	p := newPlatform(t)
	reg := simRegistry(t, p)
	ca := newTestCA(t)
	serverCert := ca.issue(t, "localhost", "localhost")
	clientCert := newSimCert(t, p)

	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			// Two connections to one server config with one client session cache: the second
			// is attested afresh, as the server issues no session tickets.
			serverConfig, cache := ServerConfig(serverCert), tls.NewLRUClientSessionCache(4)
			for i := range 2 {
				port, done := serveOnce(t, serverConfig, reg, admitAll)
				cfg, err := ClientConfig(clientCert, ca.pool(), "localhost:"+port)
				if err != nil {
					t.Fatal(err)
				}
				cfg.MaxVersion, cfg.ClientSessionCache = version, cache
				got, err := fetch(t, port, cfg)
				if err != nil || got != "secret" {
					t.Errorf("connection %d: client got %q, %v", i, got, err)
				}
				r := <-done
				if r.err != nil || !r.verified || r.resumed || r.verr != nil || r.claims == nil || !bytes.Equal(r.claims.MREnclave, enclave.MREnclave[:]) {
					t.Errorf("connection %d: server %+v", i, r)
				}
			}
		})
	}
}

func TestHandshakeRefused(t *testing.T) {
	p := newPlatform(t)
	reg := simRegistry(t, p)
	ca := newTestCA(t)
	serverCert := ca.issue(t, "localhost", "localhost")
	clientCert := newSimCert(t, p)
	errPolicy := errors.New("enclave not in the policy")
	twoCerts := clientCert
	twoCerts.Certificate = [][]byte{clientCert.Certificate[0], clientCert.Certificate[0]}

	for _, tc := range []struct {
		name       string
		reg        attest.Registry
		policy     func(*attest.Claims) error
		clientCert *tls.Certificate // nil: none
		verified   bool             // whether the handshake completes and VerifyPeer is called
		verr       error            // what VerifyPeer's error wraps: nil means it returns claims
		want       error            // what the server's error wraps, if anything
	}{
		{"policy refuses", reg, func(*attest.Claims) error { return errPolicy }, &clientCert, true, nil, errPolicy},
		{"untrusted platform", simRegistry(t, newPlatform(t)), admitAll, &clientCert, true, ErrNotVerified, ErrNotVerified},
		{"two certificates", reg, admitAll, &twoCerts, true, ErrPeerCertificates, ErrPeerCertificates},
		{"no certificate", reg, admitAll, nil, false, nil, nil},
	} {
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(tc.name+"/"+tls.VersionName(version), func(t *testing.T) {
				port, done := serveOnce(t, ServerConfig(serverCert), tc.reg, tc.policy)
				cfg, err := ClientConfig(clientCert, ca.pool(), "localhost:"+port)
				if err != nil {
					t.Fatal(err)
				}
				cfg.MaxVersion = version
				cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					if tc.clientCert == nil {
						return &tls.Certificate{}, nil
					}
					return tc.clientCert, nil
				}
				got, err := fetch(t, port, cfg)
				r := <-done
				if r.err == nil || tc.want != nil && !errors.Is(r.err, tc.want) {
					t.Errorf("server error %v, want %v", r.err, tc.want)
				}
				switch {
				case r.verified != tc.verified:
					t.Errorf("verified: %v, want %v (server error %v)", r.verified, tc.verified, r.err)
				case !tc.verified && (err == nil || got != ""):
					// The handshake fails: TLS refuses the client.
					t.Errorf("client got %q, %v", got, err)
				case tc.verified && (err != nil || got != "refused: "+r.err.Error()):
					// The handshake completes, and the client is told why it is refused.
					t.Errorf("client got %q, %v; want the reason %q", got, err, r.err)
				case tc.verified && tc.verr == nil && (r.claims == nil || r.verr != nil):
					t.Errorf("VerifyPeer returned %+v, %v; want claims", r.claims, r.verr)
				case tc.verified && tc.verr != nil && (r.claims != nil || !errors.Is(r.verr, tc.verr)):
					t.Errorf("VerifyPeer returned %+v, %v; want %v", r.claims, r.verr, tc.verr)
				}
			})
		}
	}
}

func TestVerifyPeer(t *testing.T) {
	p := newPlatform(t)
	reg := simRegistry(t, p)
	leaf := newSimCert(t, p).Leaf
	for _, tc := range []struct {
		name  string
		certs []*x509.Certificate
		want  error // nil: claims
	}{
		{"one", []*x509.Certificate{leaf}, nil},
		{"none", nil, ErrPeerCertificates},
		{"two", []*x509.Certificate{leaf, leaf}, ErrPeerCertificates},
		{"not RA-TLS", []*x509.Certificate{newTestCA(t).cert}, ErrNoEvidence},
	} {
		claims, err := VerifyPeer(context.Background(), tls.ConnectionState{PeerCertificates: tc.certs}, reg, verifyAt)
		if tc.want == nil && (err != nil || claims == nil) || tc.want != nil && (claims != nil || !errors.Is(err, tc.want)) {
			t.Errorf("%s: %+v, %v; want %v", tc.name, claims, err, tc.want)
		}
	}
}

// The client checks the server's name as mbedTLS does.
func TestServerName(t *testing.T) {
	ca := newTestCA(t)
	p := newPlatform(t)
	reg := simRegistry(t, p)
	clientCert := newSimCert(t, p)
	for _, tc := range []struct {
		name, host string
		cert       tls.Certificate
		roots      *x509.CertPool
		ok         bool
	}{
		{"alternative name", "localhost", ca.issue(t, "other", "localhost"), ca.pool(), true},
		{"common name only", "localhost", ca.issue(t, "localhost"), ca.pool(), true},
		{"common name, other case", "LocalHost", ca.issue(t, "localhost"), ca.pool(), true},
		{"common name ignored beside alternative names", "localhost", ca.issue(t, "localhost", "example.org"), ca.pool(), false},
		{"address not in the common name", "127.0.0.1", ca.issue(t, "localhost"), ca.pool(), false},
		{"another name", "example.org", ca.issue(t, "localhost"), ca.pool(), false},
		{"unknown CA", "localhost", ca.issue(t, "localhost", "localhost"), newTestCA(t).pool(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, done := serveOnce(t, ServerConfig(tc.cert), reg, admitAll)
			cfg, err := ClientConfig(clientCert, tc.roots, net.JoinHostPort(tc.host, port))
			if err != nil {
				t.Fatal(err)
			}
			got, err := fetch(t, port, cfg)
			if tc.ok != (err == nil && got == "secret") || !tc.ok && !strings.HasPrefix(err.Error(), "server certificate: ") {
				t.Errorf("client got %q, %v", got, err)
			}
			<-done
		})
	}
	if _, err := ClientConfig(clientCert, ca.pool(), "localhost"); err == nil {
		t.Error("server address without a port accepted")
	}
}
