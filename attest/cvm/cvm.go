// Package cvm binds the workload that ppml run runs to a confidential VM's evidence, beyond the
// measurement of the VM's image: at launch, through what the VM's launcher gives the VM
// (MRCONFIGID for TDX, HOSTDATA for SEV-SNP), which must name the manifest's measurement.
//
// The layouts: HOSTDATA (32 bytes) is the measurement itself; MRCONFIGID (48 bytes) is the
// measurement followed by 16 zero bytes. Only the first 32 bytes are compared, so that a launcher
// may use the last 16 of MRCONFIGID for its own ends.
package cvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ppml/ppml/attest"
)

// MRConfigID returns the MRCONFIGID that binds a TD to the workload measurement m: m followed by
// 16 zero bytes.
func MRConfigID(m [32]byte) [48]byte {
	var b [48]byte
	copy(b[:], m[:])
	return b
}

// HostData returns the SEV-SNP HOSTDATA that binds a guest to the workload measurement m: m.
func HostData(m [32]byte) [32]byte { return m }

// Offsets in the evidence that carry the launch configuration.
const (
	tdxHeaderSize     = 48
	tdxDescriptorSize = 6   // quote version 5: body type u16, body size u32
	tdxMRConfigID     = 184 // in the TD report body
	tdxTEEType        = 0x81
	snpReportSize     = 0x4a0
	snpHostData       = 0xc0
)

// LaunchConfig returns what the VM's launcher gave the VM, as its own evidence says: the
// MRCONFIGID of a TDX quote (version 4 or 5), the HOSTDATA of an SEV-SNP report. It parses the
// evidence and verifies nothing: a VM reads its own.
func LaunchConfig(kind attest.Kind, evidence []byte) ([]byte, error) {
	switch kind {
	case attest.TDX:
		if len(evidence) < tdxHeaderSize {
			return nil, fmt.Errorf("TDX quote of %d bytes: shorter than its header", len(evidence))
		}
		version, tee := binary.LittleEndian.Uint16(evidence), binary.LittleEndian.Uint32(evidence[4:])
		if tee != tdxTEEType {
			return nil, fmt.Errorf("quote of TEE type %#x, not a TD's (%#x)", tee, tdxTEEType)
		}
		body := tdxHeaderSize
		switch version {
		case 4:
		case 5:
			body += tdxDescriptorSize
		default:
			return nil, fmt.Errorf("TDX quote version %d (want 4 or 5)", version)
		}
		if end := body + tdxMRConfigID + 48; len(evidence) < end {
			return nil, fmt.Errorf("TDX quote of %d bytes: too short for its TD report", len(evidence))
		}
		return bytes.Clone(evidence[body+tdxMRConfigID : body+tdxMRConfigID+48]), nil
	case attest.SNP:
		if len(evidence) < snpReportSize {
			return nil, fmt.Errorf("SEV-SNP report of %d bytes (want %d)", len(evidence), snpReportSize)
		}
		return bytes.Clone(evidence[snpHostData : snpHostData+32]), nil
	}
	return nil, fmt.Errorf("%s evidence carries no launch configuration", kind)
}

// ErrLaunchBinding: the VM was launched for another workload.
var ErrLaunchBinding = errors.New("the VM was launched for another workload")

// CheckLaunch attests once with a and checks that the VM was launched for the workload whose
// measurement is m: where MRCONFIGID (TDX) or HOSTDATA (SEV-SNP) is not zero, its first 32 bytes
// must be m. Zero means the launcher bound nothing, and other kinds of evidence have no such
// field: nothing to check then.
func CheckLaunch(a attest.Attester, m [32]byte) error {
	kind := a.Kind()
	if kind != attest.TDX && kind != attest.SNP {
		return nil
	}
	evidence, err := a.Attest(attest.ReportData{})
	if err != nil {
		return fmt.Errorf("%s attestation, to read the launch configuration: %w", kind, err)
	}
	got, err := LaunchConfig(kind, evidence)
	if err != nil {
		return err
	}
	if bytes.Equal(got, make([]byte, len(got))) {
		return nil
	}
	if !bytes.Equal(got[:32], m[:]) {
		name := map[attest.Kind]string{attest.TDX: "MRCONFIGID", attest.SNP: "HOSTDATA"}[kind]
		return fmt.Errorf("%w: its %s is %x, and the manifest's measurement is %x (give the VM launcher the value of ppml manifest measure --%s)",
			ErrLaunchBinding, name, got, m, map[attest.Kind]string{attest.TDX: "mrconfigid", attest.SNP: "hostdata"}[kind])
	}
	return nil
}
