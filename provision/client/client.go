// Package client asks ppml's and Gramine's secret provisioning servers for keys over RA-TLS,
// proving what it runs in with an attest.Attester. It is what a workload's launcher links: none
// of the server's policy, store or metrics.
package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/provision/wire"
	"github.com/ppml/ppml/ratls"
)

// Client asks provisioning servers for keys, proving what it is with its Attester. It makes its
// RA-TLS certificate (with a P-256 key) on first use and presents it on every connection;
// servers verify it each time. A Client is safe for concurrent use.
type Client struct {
	Servers  []string       // "host:port", tried in order until one answers
	Roots    *x509.CertPool // the certificate authorities of the servers' certificates
	Attester attest.Attester
	Timeout  time.Duration // per server; 0 means 30 seconds

	mu   sync.Mutex
	cert *tls.Certificate
}

// certificate returns the client's RA-TLS certificate, making it the first time.
func (c *Client) certificate() (tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert == nil {
		// A P-256 key, which ppml's server and Gramine's verifier accept, costs both sides of
		// every handshake a fraction of the P-384 key that Gramine's own client makes.
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return tls.Certificate{}, err
		}
		cert, err := ratls.NewCertificateWithKey(c.Attester, key)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("RA-TLS certificate: %w", err)
		}
		c.cert = &cert
	}
	return *c.cert, nil
}

// Fetch returns the named keys, in order, with ppml's protocol. A server that cannot be reached
// or fails the handshake is skipped for the next; a refusal ends the search (wire.ErrRefused, with
// the server's reason).
func (c *Client) Fetch(ctx context.Context, names ...string) ([][]byte, error) {
	return c.fetch(ctx, &wire.Request{Keys: names})
}

// FetchGramine returns the one secret that Gramine's protocol gives, as libsecret_prov_attest.so
// asks for it.
func (c *Client) FetchGramine(ctx context.Context) ([]byte, error) {
	secrets, err := c.fetch(ctx, &wire.Request{Gramine: true})
	if err != nil {
		return nil, err
	}
	return secrets[0], nil
}

func (c *Client) fetch(ctx context.Context, req *wire.Request) ([][]byte, error) {
	msg, err := req.Marshal()
	if err != nil {
		return nil, err
	}
	if len(c.Servers) == 0 {
		return nil, errors.New("no server to ask")
	}
	cert, err := c.certificate()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, server := range c.Servers {
		secrets, err := c.ask(ctx, server, cert, req, msg)
		if err == nil || errors.Is(err, wire.ErrRefused) {
			return secrets, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", server, err))
	}
	return nil, errors.Join(errs...)
}

func (c *Client) ask(ctx context.Context, server string, cert tls.Certificate, req *wire.Request, msg []byte) ([][]byte, error) {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg, err := ratls.ClientConfig(cert, c.Roots, server)
	if err != nil {
		return nil, err
	}
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	if _, err := conn.Write(msg); err != nil {
		return nil, err
	}
	return wire.ReadResponse(conn, req)
}
