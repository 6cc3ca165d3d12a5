package nvidia

import (
	"crypto/x509"
	"encoding/pem"
	"errors"

	"github.com/ppml/ppml/attest"
)

// Anchor is a root of trust for GPUs: the roots of their device certificate chains and of the
// certificates that sign their RIMs, and the platform they stand for.
type Anchor struct {
	Platform              attest.Platform
	DeviceRoots, RIMRoots *x509.CertPool
}

// NVIDIAAnchor is the anchor of genuine NVIDIA GPUs: the pinned [DeviceRoots] and [RIMRoots].
func NVIDIAAnchor() Anchor {
	return Anchor{Platform: attest.NVIDIA, DeviceRoots: DeviceRoots(), RIMRoots: RIMRoots()}
}

// VerifyAnchored is [Verify] for a chain of DER certificates (leaf first) against several
// anchors: it uses the first whose device roots the chain leads to, with that anchor's RIM
// roots, and returns the Verdict and that anchor's platform. opts.DeviceRoots and opts.RIMRoots
// are ignored. A chain that leads to none of them fails at [StepChain] with [ErrUntrusted].
func VerifyAnchored(evidence []byte, chain [][]byte, anchors []Anchor, opts Options) (*Verdict, attest.Platform, error) {
	var chainPEM []byte
	for _, der := range chain {
		chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	err := error(stepErr(StepChain, "%w: no GPU roots are trusted", ErrUntrusted))
	for i, a := range anchors {
		opts.DeviceRoots, opts.RIMRoots = a.DeviceRoots, a.RIMRoots
		var v *Verdict
		v, err = Verify(evidence, chainPEM, opts)
		var e *Error
		if errors.As(err, &e) && e.Step == StepChain && errors.Is(err, ErrUntrusted) && i < len(anchors)-1 {
			continue
		}
		return v, a.Platform, err
	}
	return nil, "", err
}
