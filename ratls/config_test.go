package ratls

import (
	"bytes"
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

// verdict is what a judge was told about one connection.
type verdict struct {
	called bool
	claims *attest.Claims
	err    error
}

// served is how one connection went on the server's side.
type served struct {
	verdict verdict
	err     error // from the handshake or the write
}

// serveOnce accepts one connection on a loopback listener, with a config made for it by
// newConfig whose judge records the verdict and applies policy, and writes "secret" to an
// admitted client. It returns the listener's port and a channel that yields how it went.
func serveOnce(t *testing.T, newConfig func(Judge) *tls.Config, policy func(*attest.Claims) error) (string, <-chan served) {
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
		var v verdict
		tc := tls.Server(c, newConfig(func(claims *attest.Claims, err error) error {
			v = verdict{true, claims, err}
			if err != nil {
				return nil // the handshake must fail all the same
			}
			return policy(claims)
		}))
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		err = tc.Handshake()
		if err == nil {
			_, err = tc.Write([]byte("secret"))
		}
		done <- served{v, err}
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

func TestHandshake(t *testing.T) {
	p := newPlatform(t)
	reg := simRegistry(t, p)
	ca := newTestCA(t)
	serverCert := ca.issue(t, "localhost", "localhost")
	clientCert := newSimCert(t, p)
	now := func() time.Time { return simTime.Add(time.Minute) }
	newConfig := func(judge Judge) *tls.Config { return ServerConfig(serverCert, reg, now, judge) }

	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			port, done := serveOnce(t, newConfig, admitAll)
			cfg, err := ClientConfig(clientCert, ca.pool(), "localhost:"+port)
			if err != nil {
				t.Fatal(err)
			}
			cfg.MaxVersion = version
			got, err := fetch(t, port, cfg)
			if err != nil || got != "secret" {
				t.Errorf("client got %q, %v", got, err)
			}
			r := <-done
			if v := r.verdict; r.err != nil || !v.called || v.err != nil || v.claims == nil || !bytes.Equal(v.claims.MREnclave, enclave.MREnclave[:]) {
				t.Errorf("server: %v; verdict %+v", r.err, v)
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
	now := func() time.Time { return simTime.Add(time.Minute) }
	errPolicy := errors.New("enclave not in the policy")
	twoCerts := clientCert
	twoCerts.Certificate = [][]byte{clientCert.Certificate[0], clientCert.Certificate[0]}

	for _, tc := range []struct {
		name       string
		reg        attest.Registry
		policy     func(*attest.Claims) error
		clientCert *tls.Certificate // nil: none
		judged     bool             // whether the judge is called
		told       error            // what the judge is told: nil means claims
		want       error            // what the server's error wraps, if anything
	}{
		{"policy refuses", reg, func(*attest.Claims) error { return errPolicy }, &clientCert, true, nil, errPolicy},
		{"untrusted platform", simRegistry(t, newPlatform(t)), admitAll, &clientCert, true, ErrNotVerified, ErrNotVerified},
		{"two certificates", reg, admitAll, &twoCerts, true, ErrPeerCertificates, ErrPeerCertificates},
		{"no certificate", reg, admitAll, nil, false, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, done := serveOnce(t, func(judge Judge) *tls.Config { return ServerConfig(serverCert, tc.reg, now, judge) }, tc.policy)
			cfg, err := ClientConfig(clientCert, ca.pool(), "localhost:"+port)
			if err != nil {
				t.Fatal(err)
			}
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if tc.clientCert == nil {
					return &tls.Certificate{}, nil
				}
				return tc.clientCert, nil
			}
			if got, err := fetch(t, port, cfg); err == nil || got != "" {
				t.Errorf("client got %q, %v", got, err)
			}
			r := <-done
			v := r.verdict
			if r.err == nil || tc.want != nil && !errors.Is(r.err, tc.want) {
				t.Errorf("server error %v, want %v", r.err, tc.want)
			}
			switch {
			case v.called != tc.judged:
				t.Errorf("judge called: %v, want %v", v.called, tc.judged)
			case tc.judged && tc.told == nil && (v.claims == nil || v.err != nil):
				t.Errorf("judge told %+v, %v; want claims", v.claims, v.err)
			case tc.judged && tc.told != nil && (v.claims != nil || !errors.Is(v.err, tc.told)):
				t.Errorf("judge told %+v, %v; want %v", v.claims, v.err, tc.told)
			}
		})
	}
}

// The client checks the server's name as mbedTLS does.
func TestServerName(t *testing.T) {
	ca := newTestCA(t)
	p := newPlatform(t)
	reg := simRegistry(t, p)
	clientCert := newSimCert(t, p)
	now := func() time.Time { return simTime.Add(time.Minute) }
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
			port, done := serveOnce(t, func(judge Judge) *tls.Config { return ServerConfig(tc.cert, reg, now, judge) }, admitAll)
			cfg, err := ClientConfig(clientCert, tc.roots, net.JoinHostPort(tc.host, port))
			if err != nil {
				t.Fatal(err)
			}
			got, err := fetch(t, port, cfg)
			if tc.ok != (err == nil && got == "secret") || !tc.ok && !strings.HasPrefix(err.Error(), "ratls: server certificate: ") {
				t.Errorf("client got %q, %v", got, err)
			}
			<-done
		})
	}
	if _, err := ClientConfig(clientCert, ca.pool(), "localhost"); err == nil {
		t.Error("server address without a port accepted")
	}
}
