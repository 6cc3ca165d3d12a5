package ratls

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"slices"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/rtmr"
)

// oidEventLog is ppml's extension for the event log of a TD's RTMR3 (attest/rtmr), in ppml's
// arc beside the GPU evidence's; Gramine ignores it. Its value is the log's text.
var oidEventLog = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 2}

// eventLogExtension returns the extension that carries log.
func eventLogExtension(log []byte) (pkix.Extension, error) {
	if len(log) > rtmr.MaxLogSize {
		return pkix.Extension{}, fmt.Errorf("RTMR3 event log of %d bytes exceeds %d", len(log), rtmr.MaxLogSize)
	}
	return pkix.Extension{Id: oidEventLog, Value: log}, nil
}

// EventLog returns the RTMR3 event log of an RA-TLS certificate, checked against c, the verified
// claims of the certificate's evidence ([Verify]): each event's digest is SHA-384 of its data,
// and replaying them gives the RTMR3 of the evidence. It returns false where the certificate
// has no event log (which says nothing of RTMR3). Errors wrap [ErrMalformed] or
// rtmr.ErrNoReplay.
func EventLog(cert *x509.Certificate, c *attest.Claims) ([]rtmr.Event, bool, error) {
	// crypto/x509 refuses certificates with an extension twice.
	i := slices.IndexFunc(cert.Extensions, func(e pkix.Extension) bool { return e.Id.Equal(oidEventLog) })
	if i < 0 {
		return nil, false, nil
	}
	value := cert.Extensions[i].Value
	events, err := rtmr.Parse(value)
	if err != nil {
		return nil, true, fmt.Errorf("%w: RTMR3 event log extension (%s): %w", ErrMalformed, oidEventLog, err)
	}
	if c.TEE != attest.TDX || len(c.RTMRs) != 4 {
		return nil, true, fmt.Errorf("%w: an RTMR3 event log with %s evidence, which has no RTMR3", rtmr.ErrNoReplay, c.TEE)
	}
	if err := rtmr.Check(events, c.RTMRs[3]); err != nil {
		return nil, true, err
	}
	return events, true, nil
}
