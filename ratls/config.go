package ratls

import (
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

// ErrPeerCertificates: a client sent more than one certificate. An RA-TLS certificate is
// self-signed and comes alone.
var ErrPeerCertificates = errors.New("want exactly one client certificate")

// Judge decides whether to admit an RA-TLS client. It is called once per handshake with the
// claims of the client's verified evidence, or with nil claims and the reason why its
// certificate was refused. It returns nil to admit the client, or the reason to refuse it, which
// fails the handshake. A refused certificate fails the handshake whatever Judge returns: it is
// told so that it can record the reason.
type Judge func(claims *attest.Claims, err error) error

// ServerConfig returns the configuration of a server that admits RA-TLS clients only, as
// Gramine's secret provisioning server does. The server presents cert, an ordinary certificate.
// It requires exactly one client certificate, verifies it as of now() with reg ([Verify]), and
// lets judge, which must not be nil, decide. now nil means time.Now. A client that sends no
// certificate fails the handshake before judge is called.
//
// Session tickets are off, so that every connection is attested afresh: a resumed session would
// skip the verification.
//
// The config holds no state of its own per connection. To record each connection's verdict, make
// a config per connection, with a judge that closes over that connection's record; making one
// costs little.
func ServerConfig(cert tls.Certificate, reg attest.Registry, now func() time.Time, judge Judge) *tls.Config {
	if now == nil {
		now = time.Now
	}
	return &tls.Config{
		Certificates:           []tls.Certificate{cert},
		MinVersion:             tls.VersionTLS12,
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			claims, err := verifyPeer(rawCerts, reg, now())
			if verdict := judge(claims, err); err == nil {
				err = verdict
			}
			return err
		},
	}
}

// verifyPeer verifies the certificates a client sent: exactly one, an RA-TLS certificate.
func verifyPeer(rawCerts [][]byte, reg attest.Registry, at time.Time) (*attest.Claims, error) {
	if len(rawCerts) != 1 {
		return nil, fmt.Errorf("ratls: %w, got %d", ErrPeerCertificates, len(rawCerts))
	}
	cert, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return nil, fmt.Errorf("ratls: %w: client certificate: %v", ErrMalformed, err)
	}
	return Verify(cert, reg, at)
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
		return nil, fmt.Errorf("ratls: server address: %w", err)
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
		return errors.New("ratls: the server sent no certificate")
	}
	leaf, intermediates := certs[0], x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates}); err != nil {
		return fmt.Errorf("ratls: server certificate: %w", err)
	}
	if err := verifyName(leaf, host); err != nil {
		return fmt.Errorf("ratls: server certificate: %w", err)
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
