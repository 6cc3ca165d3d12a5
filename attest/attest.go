// Package attest is what every kind of TEE evidence has in common: an Attester produces evidence
// that binds 64 bytes of report data, a Verifier checks evidence and returns the Claims it
// carries, and a Registry picks the verifier for a kind of evidence.
//
// The kinds live in the packages below: attest/sgx (SGX DCAP quotes, genuine or from a simulated
// platform, attest/sim), attest/tdx, attest/snp and attest/gramine.
package attest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Kind names a kind of evidence.
type Kind string

// The kinds of evidence.
const (
	SGX Kind = "sgx" // an SGX DCAP quote (version 3 or 4)
	TDX Kind = "tdx" // a TDX DCAP quote (version 4 or 5)
	SNP Kind = "snp" // an AMD SEV-SNP attestation report
)

// Platform names a root of trust that vouches for evidence.
type Platform string

// The roots of trust.
const (
	Intel     Platform = "intel"     // Intel's SGX root CA: genuine SGX and TDX platforms
	AMD       Platform = "amd"       // AMD's ARK: genuine SEV-SNP platforms
	Simulated Platform = "simulated" // a simulated platform of ppml's (attest/sim)
)

// ReportData is the 64 bytes a piece of evidence binds: a hash of a public key, a nonce, ...
//
// ppml gives them a layout: the first 32 bytes are RA-TLS's binding of the key (Gramine's), the
// last 32 the measurement of the workload that ppml run runs (see [ForWorkload]), zero where
// there is none (Gramine's own enclaves).
type ReportData [64]byte

// Workload returns the workload measurement that report data carries in its last 32 bytes, nil
// where they are zero or missing (report data shorter than 64 bytes).
func Workload(reportData []byte) Hex {
	if len(reportData) < 64 {
		return nil
	}
	m := reportData[32:64]
	for _, b := range m {
		if b != 0 {
			return Hex(m)
		}
	}
	return nil
}

// ForWorkload returns an Attester that attests with a, putting the workload measurement m (a
// manifest's, manifest.Measure) in the last 32 bytes of the report data of all its evidence,
// whatever the caller put there. In a confidential VM the evidence measures the VM's image,
// not what runs in it: the report data is where the evidence names the workload.
//
// The attester returned attests a's GPUs too, where a is a [GPUAttester], and carries a's event
// log, where a is a [LogAttester].
func ForWorkload(a Attester, m [32]byte) Attester {
	w := workload{a, m}
	if g, ok := a.(GPUAttester); ok {
		return WithGPUs{Attester: w, GPUs: g}
	}
	return w
}

type workload struct {
	Attester
	m [32]byte
}

func (w workload) Attest(reportData ReportData) ([]byte, error) {
	copy(reportData[32:], w.m[:])
	return w.Attester.Attest(reportData)
}

func (w workload) AttestWithLog(reportData ReportData) ([]byte, []byte, error) {
	copy(reportData[32:], w.m[:])
	return AttestWithLog(w.Attester, reportData)
}

func (w workload) Unwrap() Attester { return w.Attester }

// Attester produces evidence about the TEE it runs in.
type Attester interface {
	Kind() Kind
	// Attest returns evidence that binds reportData.
	Attest(reportData ReportData) ([]byte, error)
}

// Verifier checks evidence of one kind.
type Verifier interface {
	Kind() Kind
	// Verify checks evidence as of the time at and returns what it says. It fails unless the
	// evidence is genuine, current and not revoked; a TCB status below UpToDate is reported in
	// the claims for a policy to judge. Whatever it fetches (collateral, certificates) it fetches
	// under ctx, so that a caller's deadline or cancellation ends the wait.
	Verify(ctx context.Context, evidence []byte, at time.Time) (*Claims, error)
}

// Hex is bytes that print and marshal as lower-case hex.
type Hex []byte

func (h Hex) String() string { return hex.EncodeToString(h) }

// MarshalText encodes h as lower-case hex.
func (h Hex) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes hex.
func (h *Hex) UnmarshalText(b []byte) error {
	d, err := hex.DecodeString(string(b))
	*h = d
	return err
}

// Claims are what verified evidence says about the workload and its platform.
type Claims struct {
	TEE Kind `json:"tee"`
	// Platform names the root of trust that vouched for the evidence.
	Platform Platform `json:"platform"`

	// SGX enclave identity.
	MREnclave Hex     `json:"mrenclave,omitempty"`
	MRSigner  Hex     `json:"mrsigner,omitempty"`
	ISVProdID *uint16 `json:"isv_prod_id,omitempty"`
	ISVSVN    *uint16 `json:"isv_svn,omitempty"`

	// TDX trust domain measurements, and the rest of its report in TD.
	MRTD  Hex   `json:"mrtd,omitempty"`
	RTMRs []Hex `json:"rtmrs,omitempty"`
	TD    *TD   `json:"td,omitempty"`

	// SEV-SNP launch measurement, and the rest of the report (SNP).
	Measurement Hex        `json:"measurement,omitempty"`
	SNP         *SNPClaims `json:"snp,omitempty"`

	Debug       bool     `json:"debug"`
	TCBStatus   string   `json:"tcb_status"`
	AdvisoryIDs []string `json:"advisory_ids"`
	ReportData  Hex      `json:"report_data"`

	// What the TCB status rests on, where the evidence says (Intel DCAP: SGX and TDX). TCBDate
	// is the earliest date of the matched TCB levels: no advisory published on or after it is
	// known to affect the platform.
	TCBDate                 *time.Time `json:"tcb_date,omitempty"`
	TCBEvaluationDataNumber int        `json:"tcb_evaluation_data_number,omitempty"`
	QEStatus                string     `json:"qe_status,omitempty"`
	TDXModule               *TDXModule `json:"tdx_module,omitempty"`
	// Behind lists the components below the newest TCB level the collateral knows.
	Behind []Behind `json:"behind,omitempty"`
}

// TD is what a TDX quote says of the trust domain besides MRTD and the RTMRs.
type TD struct {
	Attributes    TDAttributes `json:"attributes"`
	XFAM          Hex          `json:"xfam"`
	MRConfigID    Hex          `json:"mr_config_id"`
	MROwner       Hex          `json:"mr_owner"`
	MROwnerConfig Hex          `json:"mr_owner_config"`
	// MRServiceTD is the hash of the service TDs bound to the TD (TD 1.5 only; zero when none).
	MRServiceTD Hex `json:"mr_service_td,omitempty"`
	// TEETCBSVN is the TDX TCB when the TD was launched; TEETCBSVN2 the TCB now (TD 1.5 only).
	TEETCBSVN      Hex `json:"tee_tcb_svn"`
	TEETCBSVN2     Hex `json:"tee_tcb_svn2,omitempty"`
	MRSEAM         Hex `json:"mr_seam"`
	MRSignerSEAM   Hex `json:"mr_signer_seam"`
	SEAMAttributes Hex `json:"seam_attributes"`
}

// TDAttributes is TD_ATTRIBUTES, raw and decoded.
type TDAttributes struct {
	Raw           Hex  `json:"raw"`             // 8 bytes, little-endian
	Debug         bool `json:"debug"`           // the host can read and change the TD
	SEPTVEDisable bool `json:"sept_ve_disable"` // no #VE on pending pages, as a Linux TD needs
	Migratable    bool `json:"migratable"`
	PKS           bool `json:"pks"`
	KL            bool `json:"kl"`
	PerfMon       bool `json:"perfmon"` // the TD may use performance counters
	ICSSD         bool `json:"icssd"`
	LASS          bool `json:"lass"`
}

// TDXModule is the TDX module's identity and TCB level.
type TDXModule struct {
	ID          string    `json:"id"` // TDX_01, ...
	ISVSVN      uint8     `json:"isv_svn"`
	Status      string    `json:"tcb_status"`
	TCBDate     time.Time `json:"tcb_date"`
	AdvisoryIDs []string  `json:"advisory_ids"`
}

// Behind is one component of the platform whose security version is below the newest TCB
// level's.
type Behind struct {
	// Component is "sgx" (an SGX TCB component: CPU microcode, BIOS), "pce", "tdx" (a TDX TCB
	// component), "tdx_module" or "qe".
	Component string `json:"component"`
	Index     int    `json:"index"`
	Name      string `json:"name,omitempty"`
	Platform  int    `json:"platform"`
	Level     int    `json:"level"`
}

// Errors that verifiers share.
var (
	// ErrUnknownKind is returned for evidence of a kind that no verifier is registered for.
	ErrUnknownKind = errors.New("no verifier for this kind of evidence")
	// ErrUntrustedRoot is wrapped by verifiers whose roots of trust do not vouch for the
	// evidence, so that AnyOf can try the next one.
	ErrUntrustedRoot = errors.New("certificate chain does not lead to a trusted root")
)

// Registry holds the verifiers a relying party trusts, one per kind.
type Registry map[Kind]Verifier

// Verify checks evidence of the given kind with its registered verifier.
func (r Registry) Verify(ctx context.Context, kind Kind, evidence []byte, at time.Time) (*Claims, error) {
	v, ok := r[kind]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKind, kind)
	}
	return v.Verify(ctx, evidence, at)
}

// AnyOf is a Verifier of one kind made of several, each trusting its own roots: Intel's, or a
// simulated platform's. Evidence verifies if one of them vouches for it.
type AnyOf []Verifier

// Kind returns the kind of the verifiers.
func (a AnyOf) Kind() Kind { return a[0].Kind() }

// Verify returns the claims of the first verifier that accepts the evidence. It stops at the
// first refusal for any reason but an untrusted root, since that verifier recognised the
// evidence as its own.
func (a AnyOf) Verify(ctx context.Context, evidence []byte, at time.Time) (*Claims, error) {
	var first error
	for _, v := range a {
		c, err := v.Verify(ctx, evidence, at)
		if err == nil || !errors.Is(err, ErrUntrustedRoot) {
			return c, err
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}
