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
	"io"
	mrand "math/rand/v2"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/provision/wire"
	"github.com/ppml/ppml/ratls"
)

// Client asks provisioning servers for keys, proving what it is with its Attester. It makes its
// RA-TLS certificate on first use and presents it on every connection; servers verify it each
// time. For ppml's protocol the certificate's key is P-256, which costs both sides of every
// handshake a fraction of a P-384 one; for Gramine's it is P-384, as Gramine's own client
// makes, since Gramine's verifier accepts P-256 only from v1.8. A Client is safe for
// concurrent use.
//
// A server that cannot be reached, or that closes the connection during the TLS handshake (as
// one does that is restarting or over its limits), is tried again after Backoff, then twice as
// long each time (jittered, up to half as long again), Tries times in all, within Timeout; then
// the next server is. A server whose certificate does not verify, or that ends the handshake
// with a TLS alert, is not tried again: it would answer the same.
type Client struct {
	Servers  []string       // "host:port", tried in order until one answers
	Roots    *x509.CertPool // the certificate authorities of the servers' certificates
	Attester attest.Attester
	Timeout  time.Duration // per server, all its tries together; 0 means 30 seconds
	Tries    int           // per server; 0 means 4
	Backoff  time.Duration // the wait before the second try; 0 means 100 ms

	mu    sync.Mutex
	certs map[elliptic.Curve]*tls.Certificate // by the curve of their key
}

// certificate returns the client's RA-TLS certificate for req: with a P-384 key for Gramine's
// protocol, P-256 for ppml's. It makes each the first time it is needed.
func (c *Client) certificate(req *wire.Request) (tls.Certificate, error) {
	curve := elliptic.P256()
	if req.Gramine {
		curve = elliptic.P384()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cert := c.certs[curve]; cert != nil {
		return *cert, nil
	}
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := ratls.NewCertificateWithKey(c.Attester, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("RA-TLS certificate: %w", err)
	}
	if c.certs == nil {
		c.certs = map[elliptic.Curve]*tls.Certificate{}
	}
	c.certs[curve] = &cert
	return cert, nil
}

// Fetch returns the named keys, in order, with ppml's protocol. A server that cannot be reached
// or fails the handshake, after its tries, is skipped for the next; a refusal ends the search
// (wire.ErrRefused, with the server's reason), as the end of ctx does.
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

// Join asks to join the mesh of the job j names, and returns the node's place in it once the
// server has admitted all of the job's nodes. The server answers when the last node joined, or
// refuses when they did not all join within the job's join_timeout: Timeout must be longer.
func (c *Client) Join(ctx context.Context, j wire.Join) (*wire.Mesh, error) {
	var m *wire.Mesh
	err := c.request(ctx, &wire.Request{Join: &j}, func(r io.Reader) (err error) {
		m, err = wire.ReadJoinResponse(r)
		return err
	})
	return m, err
}

func (c *Client) fetch(ctx context.Context, req *wire.Request) ([][]byte, error) {
	var secrets [][]byte
	err := c.request(ctx, req, func(r io.Reader) (err error) {
		secrets, err = wire.ReadResponse(r, req)
		return err
	})
	return secrets, err
}

// request sends req to the servers in turn until one answers, which read reads.
func (c *Client) request(ctx context.Context, req *wire.Request, read func(io.Reader) error) error {
	msg, err := req.Marshal()
	if err != nil {
		return err
	}
	if len(c.Servers) == 0 {
		return errors.New("no server to ask")
	}
	cert, err := c.certificate(req)
	if err != nil {
		return err
	}
	var errs []error
	for _, server := range c.Servers {
		err := c.ask(ctx, server, cert, msg, read)
		if err == nil || errors.Is(err, wire.ErrRefused) {
			return err
		}
		errs = append(errs, fmt.Errorf("%s: %w", server, err))
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// ask asks one server, trying it again while it cannot be reached or closes the connection
// during the handshake.
func (c *Client) ask(ctx context.Context, server string, cert tls.Certificate, msg []byte, read func(io.Reader) error) error {
	timeout, tries, wait := c.Timeout, c.Tries, c.Backoff
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if tries <= 0 {
		tries = 4
	}
	if wait <= 0 {
		wait = 100 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg, err := ratls.ClientConfig(cert, c.Roots, server)
	if err != nil {
		return err
	}
	for try := 1; ; try++ {
		conn, err := connect(ctx, server, cfg)
		if err == nil {
			defer conn.Close()
			if deadline, ok := ctx.Deadline(); ok {
				conn.SetDeadline(deadline)
			}
			// The end of ctx ends the wait for the answer (a join's may be long).
			defer context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })()
			if _, err := conn.Write(msg); err != nil {
				return err
			}
			if err := read(conn); err != nil && ctx.Err() != nil {
				return fmt.Errorf("%w (%w)", ctx.Err(), err)
			} else if err != nil {
				return err
			}
			return nil
		}
		if try > 1 {
			err = fmt.Errorf("%w (try %d of %d)", err, try, tries)
		}
		if try == tries || !errors.Is(err, errTransient) || ctx.Err() != nil {
			return err
		}
		d := wait + mrand.N(wait/2+1)
		if deadline, _ := ctx.Deadline(); time.Until(deadline) < d {
			return fmt.Errorf("%w; not tried again: the next try would come after the deadline", err)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w; not tried again: %w", err, ctx.Err())
		case <-t.C:
		}
		wait *= 2
	}
}

// errTransient marks the errors of a connection worth trying again.
var errTransient = errors.New("worth trying again")

// transient is an error that connect may try again.
type transient struct{ error }

func (e transient) Unwrap() []error { return []error{e.error, errTransient} }

// connect opens a TLS connection to server. Its error is transient if the server could not be
// reached or closed the connection during the handshake.
func connect(ctx context.Context, server string, cfg *tls.Config) (*tls.Conn, error) {
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", server)
	if err != nil {
		return nil, transient{err}
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
			return nil, transient{err}
		}
		return nil, err
	}
	return conn, nil
}
