package provision

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/rtmr"
	"github.com/ppml/ppml/ratls"
)

// RTMR3Log is the RTMR3 event log that came with a TD's evidence, replayed against the RTMR3 of
// the verified evidence (ratls.EventLog): what started in the TD since it booted, in order.
type RTMR3Log struct {
	Events []rtmr.Event
}

// rtmr3Input returns the RTMR3 event log of the certificate of a client whose evidence verified
// with claims c, nil where it has none; an error where it does not replay.
func rtmr3Input(cs tls.ConnectionState, c *attest.Claims) (*RTMR3Log, error) {
	events, ok, err := ratls.EventLog(cs.PeerCertificates[0], c)
	if err != nil || !ok {
		return nil, err
	}
	return &RTMR3Log{Events: events}, nil
}

// admitsRTMR3 checks rtmr3_manifest: the TD's RTMR3 event log names the manifest that the
// report data carries and, where the workload lists manifests, no manifest but those: a TD that
// has started another workload since it booted is refused.
func (w *Workload) admitsRTMR3(c *attest.Claims, log *RTMR3Log) error {
	if !w.RTMR3Manifest {
		return nil
	}
	if log == nil {
		return errors.New("the evidence carries no RTMR3 event log (rtmr3_manifest = true)")
	}
	m := attest.Workload(c.ReportData)
	if m == nil {
		return errors.New("the report data names no manifest (rtmr3_manifest = true)")
	}
	named := false
	for _, e := range log.Events {
		got, ok := e.Manifest()
		if !ok {
			continue
		}
		named = named || bytes.Equal(got, m)
		if len(w.Manifest) > 0 && !slices.ContainsFunc(w.Manifest, func(a string) bool { return hexEqual(a, got) }) {
			return fmt.Errorf("RTMR3 names manifest %x, which is not one allowed: the TD started another workload since it booted (rtmr3_manifest = true)", got)
		}
	}
	if !named {
		return fmt.Errorf("RTMR3's event log of %d events does not name manifest %s (rtmr3_manifest = true)", len(log.Events), m)
	}
	return nil
}

// maxAuditEvents bounds the events an audit record names; the rest are counted.
const maxAuditEvents = 16

// String names the log's events, for an audit record.
func (l *RTMR3Log) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "RTMR3 event log replayed: %d events", len(l.Events))
	for i, e := range l.Events {
		if i == maxAuditEvents {
			fmt.Fprintf(&b, "; and %d more", len(l.Events)-i)
			break
		}
		fmt.Fprintf(&b, "; %s %.100s", e.Type, e.Data)
	}
	return b.String()
}
