package ratls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/ppml/ppml/attest"
)

// ErrPeerCertificates: a client sent more than one certificate (or none). An RA-TLS certificate
// is self-signed and comes alone.
var ErrPeerCertificates = errors.New("want exactly one client certificate")

// ServerConfig returns the configuration of a server that admits RA-TLS clients, as Gramine's
// secret provisioning server does. The server presents cert, an ordinary certificate, and
// requires a client certificate, but does not verify it in the handshake: a client that sends
// none fails the handshake, and any other completes it.
//
// The caller must call [VerifyPeer] with the connection's state after the handshake, and release
// nothing to the client before VerifyPeer admits it. Verifying after the handshake lets a server
// tell a refused client why, over the connection, and record the verdict per connection.
//
// Session tickets are off, so that every connection is attested afresh: a resumed session would
// present the certificate of an earlier handshake.
func ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates:           []tls.Certificate{cert},
		MinVersion:             tls.VersionTLS12,
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true,
	}
}

// VerifyPeer verifies the certificates a client sent in a handshake made with [ServerConfig]:
// exactly one, else an error wrapping [ErrPeerCertificates], and that one an RA-TLS certificate,
// verified as of at with reg ([Verify]). It returns the claims of the client's evidence.
func VerifyPeer(ctx context.Context, cs tls.ConnectionState, reg attest.Registry, at time.Time) (*attest.Claims, error) {
	if len(cs.PeerCertificates) != 1 {
		return nil, fmt.Errorf("%w, got %d", ErrPeerCertificates, len(cs.PeerCertificates))
	}
	return Verify(ctx, cs.PeerCertificates[0], reg, at)
}

// ClientConfig returns the configuration of an attested client, as Gramine's secret provisioning
// client has it. The client presents cert, an RA-TLS certificate from [NewCertificate], whatever
// certificate authorities the server asks for (Gramine's server names its own). It verifies the
// server's certificate chain against roots (nil: the system's) and the certificate's name
// against the host part of serverAddr ("host:port"), as mbedTLS does: against the subject
// alternative names if the certificate has that extension, else against its common names, case
// aside. (crypto/tls alone would refuse a certificate without alternative names, such as those
// Gramine's examples make.)
//
// The certificate is used for every connection made with the config; for a fresh one per
// connection, make a certificate and a config for each.
func ClientConfig(cert tls.Certificate, roots *x509.CertPool, serverAddr string) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(serverAddr)
	if err != nil {
		return nil, fmt.Errorf("server address: %w", err)
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		ServerName:           host,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
		// The checks are those of VerifyConnection, which replaces crypto/tls's own name check.
		InsecureSkipVerify: true,
		VerifyConnection:   func(cs tls.ConnectionState) error { return verifyServer(cs.PeerCertificates, roots, host) },
	}, nil
}

// verifyServer verifies a server's certificate chain to roots, and its name.
func verifyServer(certs []*x509.Certificate, roots *x509.CertPool, host string) error {
	if len(certs) == 0 {
		return errors.New("the server sent no certificate")
	}
	leaf, intermediates := certs[0], x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates}); err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	if err := verifyName(leaf, host); err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	return nil
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// verifyName checks that a certificate is for host, by mbedTLS's rule: the subject alternative
// names if the certificate has them, else the common names.
func verifyName(c *x509.Certificate, host string) error {
	if slices.ContainsFunc(c.Extensions, func(e pkix.Extension) bool { return e.Id.Equal(oidSubjectAltName) }) {
		return c.VerifyHostname(host)
	}
	for _, n := range c.Subject.Names {
		if cn, ok := n.Value.(string); ok && n.Type.Equal(oidCommonName) && strings.EqualFold(cn, host) {
			return nil
		}
	}
	return fmt.Errorf("it is for %q (common name, no alternative names), not %q", c.Subject.CommonName, host)
}
