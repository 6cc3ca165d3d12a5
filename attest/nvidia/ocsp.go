package nvidia

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/crypto/ocsp"
)

// OCSPSource gives the recorded OCSP response for a certificate.
type OCSPSource interface {
	// OCSP returns the DER OCSP response for cert, or an error wrapping fs.ErrNotExist when
	// there is none.
	OCSP(cert *x509.Certificate) ([]byte, error)
}

// OCSPDir is a folder of recorded OCSP responses, one a certificate, named by [OCSPFileName].
type OCSPDir string

// OCSPFileName is the name of the file in an [OCSPDir] that holds cert's OCSP response: the
// SHA-256 of the certificate in hex, then ".ocsp".
func OCSPFileName(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:]) + ".ocsp"
}

// OCSP reads cert's response from the folder.
func (d OCSPDir) OCSP(cert *x509.Certificate) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(d), OCSPFileName(cert)))
}

// ocspChecker checks certificates against recorded OCSP responses at a time.
type ocspChecker struct {
	src       OCSPSource
	at        time.Time
	allowHold bool
}

// check checks chain[from:len-1] (chain leaf to root; the root has no OCSP status), each
// against its issuer, the next certificate.
func (c *ocspChecker) check(chain []*x509.Certificate, from int) error {
	for i := from; i < len(chain)-1; i++ {
		if err := c.checkOne(chain[i], chain[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func (c *ocspChecker) checkOne(cert, issuer *x509.Certificate) error {
	name := cert.Subject.CommonName
	der, err := c.src.OCSP(cert)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: no OCSP response for %q (%s): record it in the OCSP folder", ErrNoRevocationData, name, OCSPFileName(cert))
	}
	if err != nil {
		return fmt.Errorf("OCSP response for %q: %w", name, err)
	}
	resp, err := ocsp.ParseResponseForCert(der, cert, issuer)
	if err != nil {
		return fmt.Errorf("%w: OCSP response for %q: %v", ErrFormat, name, err)
	}
	if r := resp.Certificate; r != nil {
		if !slices.Contains(r.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
			return fmt.Errorf("%w: OCSP response for %q is signed by %q, which is not an OCSP signer", ErrUntrusted, name, r.Subject.CommonName)
		}
		if c.at.Before(r.NotBefore) || c.at.After(r.NotAfter) {
			return fmt.Errorf("%w: OCSP signer %q of %q's response (%s..%s)", ErrExpired, r.Subject.CommonName, name, r.NotBefore.Format(time.RFC3339), r.NotAfter.Format(time.RFC3339))
		}
	}
	if c.at.Before(resp.ThisUpdate) || (!resp.NextUpdate.IsZero() && c.at.After(resp.NextUpdate)) {
		return fmt.Errorf("%w: OCSP response for %q (%s..%s): fetch a current one", ErrExpired, name, resp.ThisUpdate.Format(time.RFC3339), resp.NextUpdate.Format(time.RFC3339))
	}
	switch resp.Status {
	case ocsp.Good:
		return nil
	case ocsp.Revoked:
		if resp.RevocationReason == ocsp.CertificateHold {
			if c.allowHold {
				return nil
			}
			return fmt.Errorf("%w: %q is on hold (certificateHold) since %s (--allow-hold accepts it)", ErrRevoked, name, resp.RevokedAt.Format(time.RFC3339))
		}
		return fmt.Errorf("%w: %q since %s (reason %d)", ErrRevoked, name, resp.RevokedAt.Format(time.RFC3339), resp.RevocationReason)
	default:
		return fmt.Errorf("%w: OCSP does not know %q (status unknown)", ErrRevoked, name)
	}
}
